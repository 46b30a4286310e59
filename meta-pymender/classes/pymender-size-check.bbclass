# pymender-size-check.bbclass: refuse a rootfs image that does not fit a rootfs partition.
#
# Used by the image types "sdimg", "uefiimg" and "mender" before they write anything. The
# partition size is PYMENDER_CALC_ROOTFS_SIZE (KiB), derived from
# PYMENDER_STORAGE_TOTAL_SIZE_MB and the other partition sizes; the error says which variable
# to raise. Not inherited by users.

inherit pymender-setup

# $1: the rootfs image.
pymender_check_rootfs_size() {
    image_bytes=$(stat -c %s "$1")
    part_bytes=$(expr ${PYMENDER_CALC_ROOTFS_SIZE} \* 1024)
    if [ "$image_bytes" -gt "$part_bytes" ]; then
        bbfatal "The rootfs image $(basename "$1") ($image_bytes bytes) is larger than a rootfs partition ($part_bytes bytes, from PYMENDER_STORAGE_TOTAL_SIZE_MB = ${PYMENDER_STORAGE_TOTAL_SIZE_MB} MiB minus boot, data and alignment): raise PYMENDER_STORAGE_TOTAL_SIZE_MB or make the image smaller."
    fi
}
