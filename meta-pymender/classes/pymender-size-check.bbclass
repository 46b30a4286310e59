# pymender-size-check.bbclass: refuse a rootfs image that does not fit a rootfs partition.
#
# Used by the image types "sdimg", "uefiimg" and "mender" before they write anything. The
# partition size is PYMENDER_CALC_ROOTFS_SIZE (KiB), derived from
# PYMENDER_STORAGE_TOTAL_SIZE_MB and the other partition sizes. The error says what made the
# filesystem too large (its content, IMAGE_ROOTFS_EXTRA_SPACE or IMAGE_ROOTFS_SIZE) and what
# to change. Not inherited by users.

inherit pymender-setup

def pymender_minimum_total_mb(d, rootfs_bytes):
    """The smallest PYMENDER_STORAGE_TOTAL_SIZE_MB whose rootfs partitions hold rootfs_bytes."""
    align = int(d.getVar("PYMENDER_PARTITION_ALIGNMENT"))
    mib = 1024 * 1024
    def up(size):
        return -(-size // align) * align
    needed = (2 * up(rootfs_bytes) + up(int(d.getVar("PYMENDER_BOOT_PART_SIZE_MB")) * mib)
              + up(int(d.getVar("PYMENDER_DATA_PART_SIZE_MB")) * mib) + 2 * align
              + int(d.getVar("PYMENDER_RESERVED_SPACE_BOOTLOADER_DATA")))
    return -(-needed // mib)

def pymender_rootfs_size_problem(d, image_bytes, content_kib):
    """Why a rootfs image of image_bytes does not fit a rootfs partition; "" when it does.

    content_kib: the rootfs directory's disk usage times IMAGE_OVERHEAD_FACTOR, which oe-core
    sizes ext and btrfs images by when it exceeds IMAGE_ROOTFS_SIZE."""
    partition_kib = int(d.getVar("PYMENDER_CALC_ROOTFS_SIZE"))
    if image_bytes <= partition_kib * 1024:
        return ""
    name = os.path.basename("%s.%s" % (d.getVar("IMAGE_NAME"), d.getVar("PYMENDER_ROOTFS_FSTYPE")))
    head = ("The rootfs image %s (%d KiB) is larger than a rootfs partition (%d KiB, from "
            "PYMENDER_STORAGE_TOTAL_SIZE_MB = %s MiB less boot, data and alignment)"
            % (name, -(-image_bytes // 1024), partition_kib, d.getVar("PYMENDER_STORAGE_TOTAL_SIZE_MB")))
    extra = int(eval(d.getVar("IMAGE_ROOTFS_EXTRA_SPACE") or "0"))
    requested = int(d.getVar("IMAGE_ROOTFS_SIZE"))
    fstype = d.getVar("PYMENDER_ROOTFS_FSTYPE")
    total = pymender_minimum_total_mb(d, image_bytes)
    if fstype.startswith("squashfs"):
        return ("%s: its compressed content is that large: raise PYMENDER_STORAGE_TOTAL_SIZE_MB to at "
                "least %d, or make the image smaller" % (head, total))
    if extra >= partition_kib:
        return ("%s: IMAGE_ROOTFS_EXTRA_SPACE (%d KiB) alone is larger: lower it, or raise "
                "PYMENDER_STORAGE_TOTAL_SIZE_MB to at least %d" % (head, extra, total))
    if content_kib > requested:
        return ("%s: its content needs %d KiB (disk usage times IMAGE_OVERHEAD_FACTOR %s) plus "
                "IMAGE_ROOTFS_EXTRA_SPACE (%d KiB): raise PYMENDER_STORAGE_TOTAL_SIZE_MB to at least "
                "%d, or make the image smaller" % (head, content_kib, d.getVar("IMAGE_OVERHEAD_FACTOR"),
                                                    extra, total))
    return ("%s: IMAGE_ROOTFS_SIZE (%d KiB) plus IMAGE_ROOTFS_EXTRA_SPACE (%d KiB) is larger: "
            "leave IMAGE_ROOTFS_SIZE to pymender (it is the partition less the extra space), or "
            "raise PYMENDER_STORAGE_TOTAL_SIZE_MB to at least %d" % (head, requested, extra, total))

def pymender_directory_kib(path):
    """Disk usage of a directory tree in KiB (what du reports)."""
    total = 0
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total // 1024

python pymender_check_rootfs_size() {
    rootfs = os.path.join(d.getVar("IMGDEPLOYDIR"), "%s.%s" % (d.getVar("IMAGE_NAME"), d.getVar("PYMENDER_ROOTFS_FSTYPE")))
    if not os.path.isfile(rootfs):
        bb.fatal("pymender: the rootfs image %s is missing" % rootfs)
    content_kib = 0
    if os.path.isdir(d.getVar("IMAGE_ROOTFS")):
        content_kib = int(pymender_directory_kib(d.getVar("IMAGE_ROOTFS")) * float(d.getVar("IMAGE_OVERHEAD_FACTOR")))
    problem = pymender_rootfs_size_problem(d, os.path.getsize(rootfs), content_kib)
    if problem:
        bb.fatal(problem)
}
pymender_check_rootfs_size[vardeps] += "PYMENDER_CALC_ROOTFS_SIZE PYMENDER_ROOTFS_FSTYPE"
