# pymender-part-images.bbclass: the disk image types "sdimg" (MBR) and "uefiimg" (GPT).
#
# Added to IMAGE_CLASSES by pymender-full; images get the types listed in PYMENDER_IMAGE_TYPES.
# Each is made by `pymender-image build` from pymender-native, with no root rights and no loop
# devices:
#   partition 1  boot (FAT, EFI System type). GRUB: the EFI GRUB binary, pymender's GRUB
#                script and the two-copy GRUB environment (from pymender-grubenv). U-Boot:
#                boot.scr and the environment files uboot.env, uboot-redund.env (from
#                pymender-ubootenv); the board's U-Boot itself is placed by its BSP
#   partition 2  rootfs A: the image's ${PYMENDER_ROOTFS_FSTYPE} rootfs
#   partition 3  rootfs B: left empty; the first update fills it
#   partition 4  data (ext4): the rootfs's /data directory (/data/pymender/device_type)
# Sizes: PYMENDER_STORAGE_TOTAL_SIZE_MB, PYMENDER_BOOT_PART_SIZE_MB, PYMENDER_DATA_PART_SIZE_MB,
# PYMENDER_PARTITION_ALIGNMENT, PYMENDER_RESERVED_SPACE_BOOTLOADER_DATA. With
# PYMENDER_IMAGE_BMAP = "1" a bmaptool map IMAGE.bmap is written too.
#
# Before the image is built, the rootfs image is checked against the rootfs partition size;
# the error names PYMENDER_STORAGE_TOTAL_SIZE_MB.

inherit pymender-setup pymender-size-check
require conf/image-uefi.conf

PYMENDER_PART_IMAGE_DEPENDS = "pymender-native:do_populate_sysroot \
                               dosfstools-native:do_populate_sysroot \
                               mtools-native:do_populate_sysroot \
                               e2fsprogs-native:do_populate_sysroot \
                               ${@pymender_bootloader_deploy_depends(d)}"

IMAGE_TYPEDEP:sdimg = "${PYMENDER_ROOTFS_FSTYPE}"
IMAGE_TYPEDEP:uefiimg = "${PYMENDER_ROOTFS_FSTYPE}"
do_image_sdimg[depends] += "${PYMENDER_PART_IMAGE_DEPENDS}"
do_image_uefiimg[depends] += "${PYMENDER_PART_IMAGE_DEPENDS}"

def pymender_bootloader_deploy_depends(d):
    """The deploy tasks that give the boot partition's files."""
    return {"grub": "grub-efi:do_deploy pymender-grubenv:do_deploy",
            "uboot": "pymender-ubootenv:do_deploy"}.get(d.getVar("PYMENDER_BOOTLOADER"), "")

# Options of `pymender-image build` that come from variables (quoted for the shell).
PYMENDER_IMAGE_ARGS = "${@pymender_image_args(d)}"

def pymender_image_args(d):
    import shlex
    args = ["--total-size-mb", d.getVar("PYMENDER_STORAGE_TOTAL_SIZE_MB"),
            "--boot-size-mb", d.getVar("PYMENDER_BOOT_PART_SIZE_MB"),
            "--data-size-mb", d.getVar("PYMENDER_DATA_PART_SIZE_MB"),
            "--alignment", d.getVar("PYMENDER_PARTITION_ALIGNMENT"),
            "--reserved-bootloader-bytes", d.getVar("PYMENDER_RESERVED_SPACE_BOOTLOADER_DATA")]
    if d.getVar("PYMENDER_DISK_ID"):
        args += ["--disk-id", d.getVar("PYMENDER_DISK_ID")]
    if d.getVar("PYMENDER_IMAGE_BMAP") == "1":
        args.append("--bmap")
    return " ".join(shlex.quote(arg) for arg in args)

# $1: directory to fill with the boot partition's files.
pymender_boot_files() {
    rm -rf "$1"
    install -d "$1"
    if [ "${PYMENDER_BOOTLOADER}" = "uboot" ]; then
        cp -R ${DEPLOY_DIR_IMAGE}/pymender-ubootenv/. "$1/"
    else
        install -d "$1${EFIDIR}"
        install -m 0644 ${DEPLOY_DIR_IMAGE}/grub-efi-${EFI_BOOT_IMAGE} "$1${EFIDIR}/${EFI_BOOT_IMAGE}"
        cp -R ${DEPLOY_DIR_IMAGE}/pymender-grubenv/. "$1/"
    fi
}

# $1: sdimg or uefiimg.
pymender_part_image() {
    image_type="$1"
    rootfs="${IMGDEPLOYDIR}/${IMAGE_NAME}.${PYMENDER_ROOTFS_FSTYPE}"
    output="${IMGDEPLOYDIR}/${IMAGE_NAME}.$image_type"
    pymender_check_rootfs_size "$rootfs"
    boot="${WORKDIR}/pymender-boot-$image_type"
    pymender_boot_files "$boot"
    data="${IMAGE_ROOTFS}/data"
    [ -d "$data" ] || data="${WORKDIR}/pymender-empty-data"
    install -d "$data"
    pymender-image build --layout "$image_type" --rootfs "$rootfs" --boot-dir "$boot" \
        --data-dir "$data" ${PYMENDER_IMAGE_ARGS} -q -o "$output"
    if [ -n "${IMAGE_LINK_NAME}" ] && [ -e "$output.bmap" ]; then
        ln -sf "$(basename "$output").bmap" "${IMGDEPLOYDIR}/${IMAGE_LINK_NAME}.$image_type.bmap"
    fi
}

IMAGE_CMD:sdimg = "pymender_part_image sdimg"
IMAGE_CMD:uefiimg = "pymender_part_image uefiimg"
