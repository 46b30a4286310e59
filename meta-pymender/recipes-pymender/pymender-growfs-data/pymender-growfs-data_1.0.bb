SUMMARY = "Grow pymender's data partition to the end of the disk on first boot"
DESCRIPTION = "A unit that, before /data is mounted, grows the data partition (the last one) \
               to the end of the disk the provisioning image was written to; the filesystem \
               then grows while mounted (systemd-growfs, the x-systemd.growfs mount option \
               that pymender's fstab line carries with PYMENDER_GROWFS_DATA = \"1\")."
HOMEPAGE = "https://pymender.example/"
BUGTRACKER = "https://pymender.example/issues"
CVE_PRODUCT = "pymender"
SECTION = "admin"
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/Apache-2.0;md5=89aea4e17d99a7cacdbeed46a0096b10"

SRC_URI = "file://pymender-grow-data;subdir=${BP} \
           file://pymender-grow-data.service.in;subdir=${BP} \
           "

inherit systemd pymender-setup

S = "${PYMENDER_UNPACKDIR}/${BP}"
# The unit names the machine's data partition.
PACKAGE_ARCH = "${MACHINE_ARCH}"

do_configure[noexec] = "1"

python do_compile() {
    pymender_render(d, os.path.join(d.getVar("S"), "pymender-grow-data.service.in"),
                    os.path.join(d.getVar("B"), "pymender-grow-data.service"))
}
do_compile[vardeps] += "PYMENDER_DATA_PART PYMENDER_DATA_PART_UNIT PYMENDER_PARTITION_ALIGNMENT"

do_install() {
    install -d ${D}${sbindir} ${D}${systemd_system_unitdir}
    install -m 0755 ${S}/pymender-grow-data ${D}${sbindir}/pymender-grow-data
    install -m 0644 ${B}/pymender-grow-data.service ${D}${systemd_system_unitdir}/pymender-grow-data.service
}

# Enabled: its [Install] section links it into data.mount.wants.
SYSTEMD_SERVICE:${PN} = "pymender-grow-data.service"
SYSTEMD_AUTO_ENABLE:${PN} = "enable"

RDEPENDS:${PN} = "util-linux-partx util-linux-sfdisk"
