# Stand-in for oe-core's meta/recipes-bsp/u-boot/u-boot_2024.01.bb (tests/layer): the sources,
# and the configuration step of u-boot-configure.inc: the board's defconfig (UBOOT_MACHINE)
# merged with every *.cfg fragment of SRC_URI into ${B}/.config (or ${B}/<config>/.config for
# each UBOOT_CONFIG).
LICENSE = "GPL-2.0-or-later"
PROVIDES += "virtual/bootloader"
SRC_URI = "git://source.denx.de/u-boot/u-boot.git;protocol=https;branch=master"
SRCREV = "866ca972d6c3cabeaf6dbac431e8e08bb30b3c8e"
require u-boot-configure-standin.inc
