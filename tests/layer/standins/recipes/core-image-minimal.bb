# Stand-in for oe-core's meta/recipes-core/images/core-image-minimal.bb (tests/layer): its
# packages, its weak rootfs size and the 4 MiB of extra space it asks for with systemd.
SUMMARY = "A small image just capable of allowing a device to boot."
IMAGE_INSTALL = "packagegroup-core-boot ${CORE_IMAGE_EXTRA_INSTALL}"
LICENSE = "MIT"
inherit image
IMAGE_ROOTFS_SIZE ?= "8192"
IMAGE_ROOTFS_EXTRA_SPACE:append = "${@bb.utils.contains("DISTRO_FEATURES", "systemd", " + 4096", "", d)}"
