SUMMARY = "pymender's GRUB boot script and two-copy boot environment"
DESCRIPTION = "The GRUB script that picks rootfs A or B, gives an update one trial boot and \
               rolls back when it was not committed, with the initial two-copy environment \
               (grub-mender-grubenv/mender_grubenv1 and 2) on the EFI boot partition. The \
               image types sdimg and uefiimg copy the deployed files onto the boot partition."
HOMEPAGE = "https://pymender.example/"
BUGTRACKER = "https://pymender.example/issues"
CVE_PRODUCT = "pymender"
SECTION = "bootloaders"
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/Apache-2.0;md5=89aea4e17d99a7cacdbeed46a0096b10"

# The environment is written by pymender's own code (the code the device runs).
DEPENDS = "pymender-native"

SRC_URI = "file://pymender-grub.cfg;subdir=${BP} \
           file://pymender-grubenv-defines.cfg.in;subdir=${BP} \
           "

inherit deploy nopackages python3native pymender-setup
require conf/image-uefi.conf

PACKAGE_ARCH = "${MACHINE_ARCH}"

do_configure[noexec] = "1"

python do_pymender_defines() {
    pymender_render(d, os.path.join(d.getVar("S"), "pymender-grubenv-defines.cfg.in"),
                    os.path.join(d.getVar("B"), "pymender-grubenv-defines.cfg"))
}
do_pymender_defines[vardeps] += "PYMENDER_ROOTFS_PART_A_NUMBER PYMENDER_ROOTFS_PART_B_NUMBER \
    PYMENDER_KERNEL_ROOT_BASE PYMENDER_KERNEL_IMAGE PYMENDER_INITRD_IMAGE PYMENDER_KERNEL_ARGS"
addtask pymender_defines after do_configure before do_compile

do_compile() {
    # grub.cfg: the machine's definitions, an empty line, then the boot script.
    cat ${B}/pymender-grubenv-defines.cfg > ${B}/grub.cfg
    echo >> ${B}/grub.cfg
    cat ${S}/pymender-grub.cfg >> ${B}/grub.cfg

    rm -rf ${B}/grub-mender-grubenv
    nativepython3 -c 'import sys
from pathlib import Path
from pymender.device.bootenv.grub import GrubEnv
GrubEnv(Path(sys.argv[1]), lock_file=None).initialize(
    {"bootcount": "0", "mender_boot_part": sys.argv[2], "upgrade_available": "0"})' \
        ${B}/grub-mender-grubenv ${PYMENDER_ROOTFS_PART_A_NUMBER}
}

do_deploy() {
    install -d ${DEPLOYDIR}/pymender-grubenv${EFIDIR}
    install -m 0644 ${B}/grub.cfg ${DEPLOYDIR}/pymender-grubenv${EFIDIR}/grub.cfg
    cp -R ${B}/grub-mender-grubenv ${DEPLOYDIR}/pymender-grubenv/
}
addtask deploy after do_compile before do_build
