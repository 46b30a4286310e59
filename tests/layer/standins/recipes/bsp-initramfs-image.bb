# A board support layer's initramfs image, written the way BSP layers often write it (tests/layer):
# its types spelled out instead of taken from INITRAMFS_FSTYPES, a weak size.
SUMMARY = "A BSP's recovery initramfs"
LICENSE = "MIT"
PACKAGE_INSTALL = "busybox base-files"
IMAGE_FSTYPES = "cpio.gz"
inherit image
IMAGE_ROOTFS_SIZE ?= "16384"
