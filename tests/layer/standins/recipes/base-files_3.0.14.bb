# Stand-in for oe-core's base-files recipe (tests/layer): what the bbappend touches.
LICENSE = "GPL-2.0-only"
SRC_URI = "file://fstab"
do_install() {
    install -m 0644 ${WORKDIR}/fstab ${D}${sysconfdir}/fstab
}
