# Stand-in for oe-core's meta/classes-recipe/image_types.bbclass (tests/layer): the filesystem
# types a pymender rootfs partition can hold, each made from IMAGE_ROOTFS into
# ${IMGDEPLOYDIR}/${IMAGE_NAME}.<type>; the ext and btrfs images are ROOTFS_SIZE KiB, which
# set_image_size computes (image.bbclass). The commands here only stand in for oe-core's: the
# tests compare signatures and sizes, they do not make filesystems with them.
IMAGE_ROOTFS_ALIGNMENT ?= "1"

oe_mkext234fs() {
	dd if=/dev/zero of=${IMGDEPLOYDIR}/${IMAGE_NAME}.$1 seek=$ROOTFS_SIZE count=0 bs=1024
	mkfs.$1 -F ${IMGDEPLOYDIR}/${IMAGE_NAME}.$1 -d ${IMAGE_ROOTFS}
}

IMAGE_CMD:ext2 = "oe_mkext234fs ext2 ${EXTRA_IMAGECMD}"
IMAGE_CMD:ext3 = "oe_mkext234fs ext3 ${EXTRA_IMAGECMD}"
IMAGE_CMD:ext4 = "oe_mkext234fs ext4 ${EXTRA_IMAGECMD}"
IMAGE_CMD:btrfs = "mkfs.btrfs ${EXTRA_IMAGECMD} -r ${IMAGE_ROOTFS} ${IMGDEPLOYDIR}/${IMAGE_NAME}.btrfs"
IMAGE_CMD:squashfs = "mksquashfs ${IMAGE_ROOTFS} ${IMGDEPLOYDIR}/${IMAGE_NAME}.squashfs -noappend"
IMAGE_CMD:squashfs-xz = "mksquashfs ${IMAGE_ROOTFS} ${IMGDEPLOYDIR}/${IMAGE_NAME}.squashfs-xz -noappend -comp xz"
IMAGE_CMD:tar = "tar -cf ${IMGDEPLOYDIR}/${IMAGE_NAME}.tar -C ${IMAGE_ROOTFS} ."
IMAGE_CMD:cpio = "(cd ${IMAGE_ROOTFS} && find . | cpio -o -H newc >${IMGDEPLOYDIR}/${IMAGE_NAME}.cpio)"
IMAGE_CMD:container = "tar -cf ${IMGDEPLOYDIR}/${IMAGE_NAME}.tar -C ${IMAGE_ROOTFS} ."
CONVERSIONTYPES = "gz bz2 xz zst u-boot"
CONVERSION_CMD:gz = "gzip -f -9 -n -c ${IMAGE_NAME}.${type} > ${IMAGE_NAME}.${type}.gz"
CONVERSION_CMD:bz2 = "bzip2 -f -k ${IMAGE_NAME}.${type}"
CONVERSION_CMD:xz = "xz -f -k ${IMAGE_NAME}.${type}"
CONVERSION_CMD:zst = "zstd -f -k ${IMAGE_NAME}.${type}"
CONVERSION_CMD:u-boot = "mkimage -A ${UBOOT_ARCH} -O linux -T ramdisk -C none -d ${IMAGE_NAME}.${type} ${IMAGE_NAME}.${type}.u-boot"
