# pymender-part-images.bbclass: the disk image types "sdimg" (MBR) and "uefiimg" (GPT).
#
# Added to IMAGE_CLASSES by pymender-full; pymender images get the types listed in
# PYMENDER_IMAGE_TYPES. Each is made by `pymender-image build` from pymender-native, with no
# root rights and no loop devices:
#   before 1     the raw boot loader PYMENDER_IMAGE_BOOTLOADER_FILE at sector
#                PYMENDER_IMAGE_BOOTLOADER_BOOTSECTOR_OFFSET, and PYMENDER_MBR_BOOTLOADER_FILE's
#                boot code in the first sector, when set
#   partition 1  boot (FAT, EFI System type), in this order, later files replacing earlier ones
#                of the same name (with a warning): what packages installed below the boot
#                partition's mount point; the board's IMAGE_BOOT_FILES (oe-core's syntax:
#                "file", "file;name", "dir/*", "dir/*;dir/", from DEPLOY_DIR_IMAGE), except the
#                entries whose place pymender's files take (a board's own boot.scr); and the
#                boot loader integration's own files: GRUB: the EFI GRUB binary, pymender's
#                GRUB script and the two-copy GRUB environment (pymender-grubenv); U-Boot:
#                boot.scr and the environment files uboot.env, uboot-redund.env
#                (pymender-ubootenv)
#   partition 2  rootfs A: the image's ${PYMENDER_ROOTFS_FSTYPE} rootfs
#   partition 3  rootfs B: left empty; the first update fills it
#   partition 4  data (ext4): what packages installed below /data (/data/pymender/device_type)
#                and the bootstrap Artifact (/data/pymender/bootstrap.mender, with
#                PYMENDER_BOOTSTRAP_ARTIFACT = "1"); the dataimg image when PYMENDER_IMAGE_TYPES
#                builds it
# Sizes: PYMENDER_STORAGE_TOTAL_SIZE_MB, PYMENDER_BOOT_PART_SIZE_MB, PYMENDER_DATA_PART_SIZE_MB,
# PYMENDER_PARTITION_ALIGNMENT, PYMENDER_RESERVED_SPACE_BOOTLOADER_DATA. With
# PYMENDER_IMAGE_BMAP = "1" a bmaptool map IMAGE.bmap is written too. Filesystem timestamps
# come from SOURCE_DATE_EPOCH, so the same inputs give the same image bytes.
#
# Before the image is built, the rootfs image is checked against the rootfs partition size;
# the error says what made it too large and which variable to change.

inherit pymender-setup pymender-size-check pymender-bootstrap-artifact
require conf/image-uefi.conf

PYMENDER_PART_IMAGE_DEPENDS = "pymender-native:do_populate_sysroot \
                               dosfstools-native:do_populate_sysroot \
                               mtools-native:do_populate_sysroot \
                               e2fsprogs-native:do_populate_sysroot \
                               ${@pymender_bootloader_deploy_depends(d)} \
                               ${PYMENDER_IMAGE_BOOTLOADER_DEPENDS} \
                               ${PYMENDER_BOOT_FILES_DEPENDS}"

# The tasks that deploy the board's IMAGE_BOOT_FILES. Board support layers name them for wic's
# disk image: the do_deploy tasks of do_image_wic[depends] (not wic's own tools); the same files
# go onto pymender's boot partition.
PYMENDER_BOOT_FILES_DEPENDS ??= "${@' '.join(dep for dep in (d.getVarFlag('do_image_wic', 'depends') or '').split() if dep.endswith(':do_deploy'))}"

# With the dataimg type built too, the disk images take their data partition from it, so both
# hold the very same filesystem.
IMAGE_TYPEDEP:sdimg = "${PYMENDER_ROOTFS_FSTYPE} ${PYMENDER_DATA_IMAGE_TYPE} ${PYMENDER_BOOTSTRAP_IMAGE_TYPE}"
IMAGE_TYPEDEP:uefiimg = "${PYMENDER_ROOTFS_FSTYPE} ${PYMENDER_DATA_IMAGE_TYPE} ${PYMENDER_BOOTSTRAP_IMAGE_TYPE}"
PYMENDER_DATA_IMAGE_TYPE = "${@'dataimg' if 'dataimg' in (d.getVar('PYMENDER_IMAGE_TYPES') or '').split() else ''}"
do_image_sdimg[depends] += "${PYMENDER_PART_IMAGE_DEPENDS}"
do_image_uefiimg[depends] += "${PYMENDER_PART_IMAGE_DEPENDS}"
do_image_sdimg[prefuncs] += "pymender_check_rootfs_size pymender_stage_boot_files"
do_image_uefiimg[prefuncs] += "pymender_check_rootfs_size pymender_stage_boot_files"
# The deployed boot files are inputs of the disk images, like the rootfs.
do_image_sdimg[vardeps] += "IMAGE_BOOT_FILES PYMENDER_BOOT_PART_MOUNT_LOCATION"
do_image_uefiimg[vardeps] += "IMAGE_BOOT_FILES PYMENDER_BOOT_PART_MOUNT_LOCATION"

def pymender_bootloader_deploy_depends(d):
    """The deploy tasks that give the boot partition's files."""
    bootloader = d.getVar("PYMENDER_BOOTLOADER")
    if bootloader == "grub":
        return "grub-efi:do_deploy pymender-grubenv:do_deploy"
    if bootloader == "uboot":
        return "pymender-ubootenv:do_deploy"
    return ""

def pymender_deployed_path(d, name):
    """A file named relative to DEPLOY_DIR_IMAGE (or absolute)."""
    return os.path.join(d.getVar("DEPLOY_DIR_IMAGE"), name)

# Options of `pymender-image build` that come from variables (quoted for the shell). Each
# variable is read by name, so BitBake reruns the disk image tasks when one changes.
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
    if d.getVar("PYMENDER_IMAGE_BOOTLOADER_FILE"):
        args += ["--bootloader", "%s:%s" % (pymender_deployed_path(d, d.getVar("PYMENDER_IMAGE_BOOTLOADER_FILE")),
                                            d.getVar("PYMENDER_IMAGE_BOOTLOADER_BOOTSECTOR_OFFSET"))]
    if d.getVar("PYMENDER_MBR_BOOTLOADER_FILE"):
        args += ["--mbr-boot-code", pymender_deployed_path(d, d.getVar("PYMENDER_MBR_BOOTLOADER_FILE")),
                 "--mbr-boot-code-length", d.getVar("PYMENDER_MBR_BOOTLOADER_LENGTH")]
    return " ".join(shlex.quote(arg) for arg in args)

def pymender_boot_file_list(deploy_dir, boot_files):
    """IMAGE_BOOT_FILES as (source below deploy_dir, destination on the boot partition) pairs.

    oe-core's syntax: "file" keeps the name, "file;name" renames it, a source with "*" is a glob
    whose matches keep their base name, in the partition's top directory or, with ";dir/", in
    that directory."""
    import glob
    pairs = []
    for entry in (boot_files or "").split():
        source, _, destination = entry.partition(";")
        if not source or (";" in entry and not destination):
            bb.fatal("IMAGE_BOOT_FILES: malformed entry \"%s\" (FILE, FILE;NAME or DIR/*;DIR/)" % entry)
        if "*" in source:
            matches = sorted(glob.glob(os.path.join(deploy_dir, source)))
            if not matches:
                bb.fatal("IMAGE_BOOT_FILES: \"%s\" matches nothing in %s" % (source, deploy_dir))
            for match in matches:
                name = os.path.basename(match)
                pairs.append((os.path.relpath(match, deploy_dir),
                              os.path.join(destination, name) if destination else name))
        else:
            pairs.append((source, destination or source))
    return pairs

def pymender_integration_boot_files(d):
    """The boot loader integration's own files: (source path, destination) pairs."""
    deploy = d.getVar("DEPLOY_DIR_IMAGE")
    if d.getVar("PYMENDER_BOOTLOADER") == "uboot":
        top = os.path.join(deploy, "pymender-ubootenv")
        pairs = []
    else:
        efi = d.getVar("EFI_BOOT_IMAGE")
        top = os.path.join(deploy, "pymender-grubenv")
        pairs = [(os.path.join(deploy, "grub-efi-" + efi), d.getVar("EFIDIR").strip("/") + "/" + efi)]
    for root, dirs, files in os.walk(top):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            pairs.append((path, os.path.relpath(path, top)))
    if not pairs or not os.path.isdir(top):
        bb.fatal("pymender: the boot loader files are missing in %s" % top)
    return pairs

# Each disk image task fills its own directory with the boot partition's files.
PYMENDER_BOOT_FILES_DIR = "${WORKDIR}/pymender-boot-files-${BB_CURRENTTASK}"

python pymender_stage_boot_files() {
    import filecmp, shutil
    boot = d.getVar("PYMENDER_BOOT_FILES_DIR")
    bb.utils.remove(boot, True)
    bb.utils.mkdirhier(boot)
    integration = [(source, os.path.normpath(destination))
                   for source, destination in pymender_integration_boot_files(d)]
    own = {destination for _, destination in integration}
    origin = {}
    def place(source, destination, what):
        destination = os.path.normpath(destination.lstrip("/"))
        if destination.startswith(".."):
            bb.fatal("pymender: %s: %s would land outside the boot partition" % (what, destination))
        target = os.path.join(boot, destination)
        if not os.path.isfile(source):
            bb.fatal("pymender: %s: %s does not exist" % (what, source))
        if destination in origin and not filecmp.cmp(source, target, shallow=False):
            bb.warn("pymender: the boot partition's %s from %s is replaced by the one from %s"
                    % (destination, origin[destination], what))
        bb.utils.mkdirhier(os.path.dirname(target))
        shutil.copyfile(source, target)
        origin[destination] = what

    content = d.getVar("PYMENDER_BOOT_CONTENT")
    for root, dirs, files in os.walk(content):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            place(path, os.path.relpath(path, content),
                  "the rootfs's %s" % d.getVar("PYMENDER_BOOT_PART_MOUNT_LOCATION"))
    deploy = d.getVar("DEPLOY_DIR_IMAGE")
    for source, destination in pymender_boot_file_list(deploy, d.getVar("IMAGE_BOOT_FILES")):
        if os.path.normpath(destination.lstrip("/")) in own:
            # The board's own boot script (or GRUB): pymender's takes its place.
            bb.note("pymender: IMAGE_BOOT_FILES %s is left out: pymender's %s integration provides %s"
                    % (source, d.getVar("PYMENDER_BOOTLOADER"), destination))
            continue
        place(os.path.join(deploy, source), destination, "IMAGE_BOOT_FILES")
    for source, destination in integration:
        place(source, destination, "pymender's %s integration" % d.getVar("PYMENDER_BOOTLOADER"))
}

# $1: sdimg or uefiimg.
pymender_part_image() {
    image_type="$1"
    rootfs="${IMGDEPLOYDIR}/${IMAGE_NAME}.${PYMENDER_ROOTFS_FSTYPE}"
    output="${IMGDEPLOYDIR}/${IMAGE_NAME}.$image_type"
    if [ -n "${PYMENDER_DATA_IMAGE_TYPE}" ]; then
        set -- --data-image "${IMGDEPLOYDIR}/${IMAGE_NAME}.${PYMENDER_DATA_IMAGE_TYPE}"
    else
        pymender_stage_data
        set -- --data-dir "${PYMENDER_DATA_STAGING}"
    fi
    pymender-image build --layout "$image_type" --rootfs "$rootfs" --boot-dir "${PYMENDER_BOOT_FILES_DIR}" \
        "$@" ${PYMENDER_IMAGE_ARGS} -q -o "$output"
    if [ -n "${IMAGE_LINK_NAME}" ] && [ -e "$output.bmap" ]; then
        ln -sf "$(basename "$output").bmap" "${IMGDEPLOYDIR}/${IMAGE_LINK_NAME}.$image_type.bmap"
    fi
}

IMAGE_CMD:sdimg = "pymender_part_image sdimg"
IMAGE_CMD:uefiimg = "pymender_part_image uefiimg"
