# Stand-in for oe-core's meta/classes-recipe/python_setuptools_build_meta.bbclass and
# python_pep517.bbclass (tests/layer): the build dependencies and the install step that the
# recipe's do_install:append follows.
DEPENDS:append = " python3-setuptools-native python3-wheel-native"
python_pep517_do_install() {
	python3 -m installer --destdir=${D} ${WORKDIR}/dist/*.whl
}
do_install() {
	python_pep517_do_install
}
