# Stand-in for oe-core's u-boot recipe (tests/layer): its sources, before any bbappend.
LICENSE = "GPL-2.0-or-later"
SRC_URI = "git://source.denx.de/u-boot/u-boot.git;protocol=https;branch=master"
