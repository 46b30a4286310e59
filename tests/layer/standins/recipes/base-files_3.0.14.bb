# Stand-in for oe-core's meta/recipes-core/base-files/base-files_3.0.14.bb (tests/layer): the
# machine-specific package that owns /etc/fstab, installed from its SRC_URI file.
LICENSE = "GPL-2.0-only"
SRC_URI = "file://fstab"
S = "${@d.getVar('UNPACKDIR') or d.getVar('WORKDIR')}"
dirs755 = "/boot /dev ${sysconfdir} /mnt /run ${prefix} ${bindir} ${localstatedir}"
do_install() {
	for d in ${dirs755}; do
		install -m 0755 -d ${D}$d
	done
	install -m 0644 ${S}/fstab ${D}${sysconfdir}/fstab
}
PACKAGE_ARCH = "${MACHINE_ARCH}"
