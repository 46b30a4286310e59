# A board vendor's U-Boot fork, as i.MX BSP layers ship it (tests/layer): another recipe name
# providing virtual/bootloader, configured the same way as oe-core's u-boot.
LICENSE = "GPL-2.0-or-later"
PROVIDES += "virtual/bootloader"
SRC_URI = "git://github.com/nxp-imx/uboot-imx.git;protocol=https;branch=lf_v2024.04"
SRCREV = "0cd6e2e9c2dd7e7c4f2c36ab4e2a65a0ab9ad4b5"
require u-boot-configure-standin.inc
