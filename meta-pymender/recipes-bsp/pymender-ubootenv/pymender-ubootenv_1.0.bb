SUMMARY = "pymender's U-Boot boot script, redundant boot environment and fw_env.config"
DESCRIPTION = "boot.scr, the U-Boot script that picks rootfs A or B, gives an update one trial \
               boot and rolls back when it was not committed; the initial environment in two \
               redundant copies (uboot.env, uboot-redund.env) on the boot partition, which the \
               image types sdimg and uefiimg copy there from the deploy directory; and \
               /etc/fw_env.config naming those two files for pymender and libubootenv."
HOMEPAGE = "https://pymender.example/"
BUGTRACKER = "https://pymender.example/issues"
CVE_PRODUCT = "pymender"
SECTION = "bootloaders"
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/Apache-2.0;md5=89aea4e17d99a7cacdbeed46a0096b10"

# mkimage and mkenvimage (installed as uboot-mkimage and uboot-mkenvimage).
DEPENDS = "u-boot-tools-native"

SRC_URI = "file://pymender-boot.cmd;subdir=${BP} \
           file://pymender-boot-defines.cmd.in;subdir=${BP} \
           file://pymender-uboot-env.txt.in;subdir=${BP} \
           file://fw_env.config.in;subdir=${BP} \
           "

inherit deploy pymender-setup

PACKAGE_ARCH = "${MACHINE_ARCH}"

# mkimage's name of the machine's architecture ("-A"): arm64 for aarch64, arm for 32-bit arm.
PYMENDER_MKIMAGE_ARCH = "${@{'aarch64': 'arm64', 'riscv32': 'riscv', 'riscv64': 'riscv'}.get(d.getVar('TARGET_ARCH'), d.getVar('TARGET_ARCH'))}"

do_configure[noexec] = "1"

python do_pymender_defines() {
    for name in ("pymender-boot-defines.cmd", "pymender-uboot-env.txt", "fw_env.config"):
        pymender_render(d, os.path.join(d.getVar("S"), name + ".in"), os.path.join(d.getVar("B"), name))
}
do_pymender_defines[vardeps] += "PYMENDER_ROOTFS_PART_A_NUMBER PYMENDER_ROOTFS_PART_B_NUMBER \
    PYMENDER_ROOTFS_PART_A_NUMBER_HEX PYMENDER_ROOTFS_PART_B_NUMBER_HEX PYMENDER_KERNEL_ROOT_BASE \
    PYMENDER_KERNEL_IMAGE PYMENDER_INITRD_IMAGE PYMENDER_KERNEL_DEVICETREE PYMENDER_KERNEL_ARGS \
    PYMENDER_UBOOT_ENV_SIZE PYMENDER_BOOT_PART_MOUNT_LOCATION"
addtask pymender_defines after do_configure before do_compile

do_compile() {
    # boot.cmd: the machine's definitions, an empty line, then the boot script.
    cat ${B}/pymender-boot-defines.cmd > ${B}/boot.cmd
    echo >> ${B}/boot.cmd
    cat ${S}/pymender-boot.cmd >> ${B}/boot.cmd
    uboot-mkimage -A ${PYMENDER_MKIMAGE_ARCH} -O linux -T script -C none -n "pymender boot script" \
        -d ${B}/boot.cmd ${B}/boot.scr

    # Both copies equal (same flags): the first one is current for U-Boot and libubootenv.
    uboot-mkenvimage -r -s ${PYMENDER_UBOOT_ENV_SIZE} -o ${B}/uboot.env ${B}/pymender-uboot-env.txt
    cp ${B}/uboot.env ${B}/uboot-redund.env
}

do_install() {
    install -d ${D}${sysconfdir}
    install -m 0644 ${B}/fw_env.config ${D}${sysconfdir}/fw_env.config
}

do_deploy() {
    install -d ${DEPLOYDIR}/pymender-ubootenv
    install -m 0644 ${B}/boot.scr ${B}/uboot.env ${B}/uboot-redund.env ${DEPLOYDIR}/pymender-ubootenv/
}
addtask deploy after do_compile before do_build

# fw_printenv and fw_setenv, for people and scripts; pymender writes the environment itself.
RDEPENDS:${PN} = "libubootenv-bin"
