# Stand-in for oe-core's meta/recipes-core/images/core-image-minimal-initramfs.bb (tests/layer):
# an initramfs image, whose types come from INITRAMFS_FSTYPES.
SUMMARY = "Small image capable of booting a device."
INITRAMFS_SCRIPTS ?= "initramfs-framework-base initramfs-module-udev"
PACKAGE_INSTALL = "${INITRAMFS_SCRIPTS} ${VIRTUAL-RUNTIME_base-utils} udev base-passwd"
IMAGE_FEATURES = ""
IMAGE_LINGUAS = ""
LICENSE = "MIT"
IMAGE_FSTYPES = "${INITRAMFS_FSTYPES}"
inherit image
IMAGE_ROOTFS_SIZE = "8192"
IMAGE_ROOTFS_EXTRA_SPACE = "0"
