# pymender-dataimg.bbclass: the image type "dataimg", the data partition on its own.
#
# Added to IMAGE_CLASSES by pymender-full; add "dataimg" to PYMENDER_IMAGE_TYPES to build it.
# ${IMAGE_NAME}.dataimg is the ext4 filesystem of the data partition (`pymender-image filesystem
# --partition data`, the sizes and ids the disk images use): what packages installed below
# /data and the bootstrap Artifact (PYMENDER_BOOTSTRAP_ARTIFACT), PYMENDER_DATA_PART_SIZE_MB
# rounded up to the alignment. The disk images built with it
# take it as their partition 4, byte for byte. Use it to provision or reset a device's data
# partition without the rest of the disk.

inherit pymender-setup pymender-bootstrap-artifact

IMAGE_TYPEDEP:dataimg = "${PYMENDER_BOOTSTRAP_IMAGE_TYPE}"
do_image_dataimg[depends] += "pymender-native:do_populate_sysroot e2fsprogs-native:do_populate_sysroot"
# The same filesystem the disk images hold: the options that decide its size and ids.
PYMENDER_DATAIMG_ARGS = "${@pymender_dataimg_args(d)}"

def pymender_dataimg_args(d):
    import shlex
    args = ["--data-size-mb", d.getVar("PYMENDER_DATA_PART_SIZE_MB"),
            "--alignment", d.getVar("PYMENDER_PARTITION_ALIGNMENT")]
    if d.getVar("PYMENDER_DISK_ID"):
        args += ["--disk-id", d.getVar("PYMENDER_DISK_ID")]
    return " ".join(shlex.quote(arg) for arg in args)

pymender_data_image() {
    pymender_stage_data
    pymender-image filesystem --partition data --dir "${PYMENDER_DATA_STAGING}" ${PYMENDER_DATAIMG_ARGS} \
        -o "${IMGDEPLOYDIR}/${IMAGE_NAME}.dataimg"
}

IMAGE_CMD:dataimg = "pymender_data_image"
