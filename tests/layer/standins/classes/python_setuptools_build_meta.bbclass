# Stand-in for oe-core's python_setuptools_build_meta.bbclass (tests/layer).
DEPENDS:append = " python3-setuptools-native python3-wheel-native"
python_pep517_do_install() {
    :
}
do_install() {
    python_pep517_do_install
}
