# pymender-setup.bbclass: every PYMENDER_* variable, its default and its meaning, in one place.
#
# Inherited by pymender-full.bbclass and by the layer's own recipes and image classes (so they
# parse with the defaults even before the build opts in). Users do not inherit it themselves.
#
# Each variable follows the same two-level pattern:
#     PYMENDER_X ??= "${PYMENDER_X_DEFAULT}"
#     PYMENDER_X_DEFAULT = "<value>"
# Set PYMENDER_X in local.conf, a distro or kas file. A BSP layer that wants another default
# for its machines sets PYMENDER_X_DEFAULT (or PYMENDER_X_DEFAULT:<machine>) instead, so the
# user's setting still wins.
#
# Artifact (the .mender update; image type "mender")
#   PYMENDER_ARTIFACT_NAME           name of the Artifact and of the software the image holds.
#                                    Mandatory: the build stops when it is empty.
#   PYMENDER_DEVICE_TYPE             device type written to /data/pymender/device_type.
#                                    Default: ${MACHINE}
#   PYMENDER_DEVICE_TYPES_COMPATIBLE device types the Artifact installs on (space separated).
#                                    Default: ${PYMENDER_DEVICE_TYPE}
#   PYMENDER_ARTIFACT_SIGNING_KEY    PEM private key (RSA or ECDSA P-256) to sign the Artifact
#                                    with; empty: unsigned. Default: empty
#   PYMENDER_ARTIFACT_VERIFY_KEY     PEM public key installed as
#                                    /etc/pymender/artifact-verify-key.pem; the device then
#                                    refuses Artifacts not signed by its private key.
#                                    Default: empty
#   PYMENDER_SERVER_URL              Managed mode: the Mender server (ServerURL). When set,
#                                    pymender.service is installed enabled and runs the daemon,
#                                    and the identity and inventory scripts are installed
#                                    (pymender-managed). Default: empty (standalone mode)
#   PYMENDER_TENANT_TOKEN            TenantToken (hosted Mender's organization). Default: empty
#   PYMENDER_SERVER_CERTIFICATE      PEM CA file installed as /etc/pymender/server.crt
#                                    (ServerCertificate), for a server whose certificate the
#                                    system store does not trust. Default: empty
#   PYMENDER_ARTIFACT_SCRIPTS_DIR    directory of state scripts (ArtifactInstall_Enter_10_x,
#                                    ...) added to the Artifact, besides those that recipes
#                                    ship with pymender-state-scripts. Default: empty
#   PYMENDER_ARTIFACT_PROVIDES       KEY:VALUE pairs the Artifact provides. Default: empty
#   PYMENDER_ARTIFACT_PROVIDES_GROUP group the Artifact provides. Default: empty
#   PYMENDER_ARTIFACT_DEPENDS        KEY:VALUE pairs the device must provide. Default: empty
#   PYMENDER_ARTIFACT_DEPENDS_GROUPS groups the device must be in. Default: empty
#   PYMENDER_ARTIFACT_NAME_DEPENDS   Artifact names the device must run. Default: empty
#   PYMENDER_ARTIFACT_EXTRA_ARGS     further pymender-artifact options, e.g.
#                                    "--compression lzma". Default: empty
#
# Bootstrap Artifact (image type "bootstrap-artifact", on the data partition)
#   PYMENDER_BOOTSTRAP_ARTIFACT      "1": the data partition holds a bootstrap Artifact,
#                                    /data/pymender/bootstrap.mender, with the image's name and
#                                    provides (rootfs-image.version, rootfs-image.checksum),
#                                    which the device installs before its first use, as
#                                    meta-mender's mender-bootstrap-artifact; "0": none.
#                                    Default: 1
#   PYMENDER_ARTIFACT_NAME_BOOTSTRAP name of the bootstrap Artifact.
#                                    Default: ${PYMENDER_ARTIFACT_NAME}
#   PYMENDER_ARTIFACT_PROVIDES_BOOTSTRAP  KEY:VALUE pairs only the bootstrap Artifact provides
#                                    (besides PYMENDER_ARTIFACT_PROVIDES). Default: empty
#
# Commands
#   PYMENDER_MENDER_UPDATE           "1": the image also gets the mender-update command
#                                    (/usr/bin/mender-update, package pymender-mender-update):
#                                    Mender 5.x's command line, for devices and scripts made for
#                                    Mender. It conflicts with Mender's own mender-update
#                                    package. Default: 0
#   PYMENDER_UPDATE_MODULES          Update Modules pymender installs in the image, in
#                                    /usr/share/pymender/modules/v3 (packages
#                                    pymender-update-modules-<name>): any of single-file,
#                                    directory, script, deb (space separated), as meta-mender's
#                                    "modules". Default: empty (none)
#
# Images (which images, which types)
#   PYMENDER_IMAGE_ENABLE            "1": this image gets pymender (the updater, the Artifact,
#                                    the disk image); "0": it does not; empty: every image
#                                    recipe does except initramfs and container images (an
#                                    image whose types are all cpio, container or oci, or the
#                                    INITRAMFS_IMAGE). Per image: PYMENDER_IMAGE_ENABLE:pn-<image>.
#                                    Default: empty
#   PYMENDER_IMAGE_TYPES             image types added besides "mender": sdimg (MBR disk
#                                    image), uefiimg (GPT disk image), dataimg (the data
#                                    partition alone). Default: sdimg
#   PYMENDER_IMAGE_BMAP              "1": write IMAGE.bmap next to each disk image. Default: 1
#   PYMENDER_ROOTFS_FSTYPE           filesystem of the root filesystem partitions: the image
#                                    type whose file goes into them and into the Artifact:
#                                    ext4, ext3, ext2, btrfs, squashfs, squashfs-xz,
#                                    squashfs-lzo, squashfs-lz4, squashfs-zst. Default: ext4
#
# Storage and partitions (image types "sdimg", "uefiimg", "dataimg"; sizes as meta-mender's)
#   PYMENDER_STORAGE_DEVICE          the device's disk, e.g. /dev/mmcblk0.
#                                    Default: /dev/mmcblk0; /dev/vda on qemux86-64, qemuarm64
#                                    (the virtio disk of scripts/pymender-qemu)
#   PYMENDER_STORAGE_DEVICE_BASE     prefix of the partition names: the disk, plus "p" when
#                                    the disk name ends in a digit
#   PYMENDER_STORAGE_TOTAL_SIZE_MB   whole disk and image size, MiB. Default: 1024
#   PYMENDER_BOOT_PART_SIZE_MB       boot partition, MiB. Default: 16
#   PYMENDER_DATA_PART_SIZE_MB       data partition, MiB. Default: 128
#   PYMENDER_PARTITION_ALIGNMENT     partition alignment in bytes. Default: 8388608
#   PYMENDER_RESERVED_SPACE_BOOTLOADER_DATA  bytes kept between the first alignment and
#                                    partition 1, a multiple of the alignment (room for a raw
#                                    boot loader that does not fit the first alignment).
#                                    Default: 0
#   PYMENDER_CALC_ROOTFS_SIZE        derived, read-only: each rootfs partition, KiB
#                                    (the formula of pymender-image rootfs-size)
#   PYMENDER_BOOT_PART_MOUNT_LOCATION  where the boot partition is mounted.
#                                    Default: /boot/efi; /uboot with PYMENDER_BOOTLOADER = "uboot"
#   PYMENDER_BOOT_PART_FSTAB_OPTS    mount options of the boot partition. Default:
#                                    defaults,nofail (a missing or damaged partition does not
#                                    stop the boot; pymender then says what is missing)
#   PYMENDER_DATA_PART_FSTAB_OPTS    mount options of /data. Default: defaults,nofail (and
#                                    x-systemd.growfs with PYMENDER_GROWFS_DATA = "1")
#   PYMENDER_GROWFS_DATA             "1": on first boot, grow the data partition and its
#                                    filesystem to the end of the disk (a disk larger than the
#                                    image). Default: 1
#   PYMENDER_DISK_ID                 seed of the disk and partition ids (pymender-image
#                                    --disk-id); empty: the tool's default. Default: empty
#   PYMENDER_IMAGE_BOOTLOADER_FILE   a boot loader written to the raw disk before partition 1
#                                    (SPL, U-Boot), relative to DEPLOY_DIR_IMAGE or absolute;
#                                    empty: none. Default: empty
#   PYMENDER_IMAGE_BOOTLOADER_BOOTSECTOR_OFFSET  the 512-byte sector it starts at. Default: 2
#   PYMENDER_IMAGE_BOOTLOADER_DEPENDS  the task that deploys it, e.g.
#                                    "u-boot:do_deploy". Default: the U-Boot recipe's
#                                    do_deploy when the file is set, else empty
#   PYMENDER_MBR_BOOTLOADER_FILE     boot code for the first sector (e.g. GRUB's boot.img),
#                                    relative to DEPLOY_DIR_IMAGE or absolute. Default: empty
#   PYMENDER_MBR_BOOTLOADER_LENGTH   bytes of it to write (at most 440: the disk signature
#                                    and partition table stay). Default: 440
#
# Boot
#   PYMENDER_BOOTLOADER              "grub" (EFI) or "uboot" (a U-Boot with distro boot runs
#                                    boot.scr from the boot partition).
#                                    Default: grub; uboot on arm and aarch64
#   PYMENDER_UBOOT_RECIPES           U-Boot only: the recipes that build the board's U-Boot;
#                                    they get pymender's configuration fragment and the
#                                    environment size check.
#                                    Default: ${PREFERRED_PROVIDER_virtual/bootloader}, or u-boot
#   PYMENDER_KERNEL_IMAGE            kernel path inside the rootfs (U-Boot: an arm64 Image,
#                                    plain or gzip-compressed). Default: /boot/${KERNEL_IMAGETYPE}
#   PYMENDER_INITRD_IMAGE            initramfs path inside the rootfs; empty: none
#   PYMENDER_KERNEL_DEVICETREE       U-Boot only: device tree path inside the rootfs (e.g.
#                                    /boot/board.dtb, from the kernel-devicetree package);
#                                    empty: the device tree U-Boot itself runs with. Default: empty
#   PYMENDER_KERNEL_ARGS             further kernel arguments. Default: rw (ro for squashfs),
#                                    plus the serial console on qemux86-64 and qemuarm64
#   PYMENDER_KERNEL_ROOT_BASE        root= is this plus the partition number; empty:
#                                    root=PARTUUID=... found by the boot script. Default: empty
#   PYMENDER_UBOOT_ENV_SIZE          U-Boot only: size of each of the two environment files
#                                    (uboot.env, uboot-redund.env) on the boot partition, hex;
#                                    at most the CONFIG_ENV_SIZE of the board's U-Boot (the
#                                    build checks it). Default: 0x4000
#
# Source of the updater (recipe pymender)
#   PYMENDER_SOURCE                  "local": the pymender source tree PYMENDER_SRC_DIR (the
#                                    repository holding this layer); "git": the pinned release
#                                    PYMENDER_GIT_URI at PYMENDER_GIT_SRCREV. Default: local
#   PYMENDER_SRC_DIR                 the local source tree. Default: the repository that holds
#                                    meta-pymender (three directories above the recipe)
#   PYMENDER_GIT_URI                 git URL of the pymender release, with its branch.
#   PYMENDER_GIT_SRCREV              the commit of that release.

PYMENDER_DEVICE_TYPE ??= "${PYMENDER_DEVICE_TYPE_DEFAULT}"
PYMENDER_DEVICE_TYPE_DEFAULT = "${MACHINE}"
PYMENDER_DEVICE_TYPES_COMPATIBLE ??= "${PYMENDER_DEVICE_TYPES_COMPATIBLE_DEFAULT}"
PYMENDER_DEVICE_TYPES_COMPATIBLE_DEFAULT = "${PYMENDER_DEVICE_TYPE}"

PYMENDER_ARTIFACT_NAME ??= ""
PYMENDER_ARTIFACT_SIGNING_KEY ??= "${PYMENDER_ARTIFACT_SIGNING_KEY_DEFAULT}"
PYMENDER_ARTIFACT_SIGNING_KEY_DEFAULT = ""
PYMENDER_ARTIFACT_VERIFY_KEY ??= "${PYMENDER_ARTIFACT_VERIFY_KEY_DEFAULT}"
PYMENDER_ARTIFACT_VERIFY_KEY_DEFAULT = ""
PYMENDER_SERVER_URL ??= "${PYMENDER_SERVER_URL_DEFAULT}"
PYMENDER_SERVER_URL_DEFAULT = ""
PYMENDER_TENANT_TOKEN ??= "${PYMENDER_TENANT_TOKEN_DEFAULT}"
PYMENDER_TENANT_TOKEN_DEFAULT = ""
PYMENDER_SERVER_CERTIFICATE ??= "${PYMENDER_SERVER_CERTIFICATE_DEFAULT}"
PYMENDER_SERVER_CERTIFICATE_DEFAULT = ""
PYMENDER_ARTIFACT_SCRIPTS_DIR ??= "${PYMENDER_ARTIFACT_SCRIPTS_DIR_DEFAULT}"
PYMENDER_ARTIFACT_SCRIPTS_DIR_DEFAULT = ""
PYMENDER_ARTIFACT_PROVIDES ??= "${PYMENDER_ARTIFACT_PROVIDES_DEFAULT}"
PYMENDER_ARTIFACT_PROVIDES_DEFAULT = ""
PYMENDER_ARTIFACT_PROVIDES_GROUP ??= "${PYMENDER_ARTIFACT_PROVIDES_GROUP_DEFAULT}"
PYMENDER_ARTIFACT_PROVIDES_GROUP_DEFAULT = ""
PYMENDER_ARTIFACT_DEPENDS ??= "${PYMENDER_ARTIFACT_DEPENDS_DEFAULT}"
PYMENDER_ARTIFACT_DEPENDS_DEFAULT = ""
PYMENDER_ARTIFACT_DEPENDS_GROUPS ??= "${PYMENDER_ARTIFACT_DEPENDS_GROUPS_DEFAULT}"
PYMENDER_ARTIFACT_DEPENDS_GROUPS_DEFAULT = ""
PYMENDER_ARTIFACT_NAME_DEPENDS ??= "${PYMENDER_ARTIFACT_NAME_DEPENDS_DEFAULT}"
PYMENDER_ARTIFACT_NAME_DEPENDS_DEFAULT = ""
PYMENDER_ARTIFACT_EXTRA_ARGS ??= "${PYMENDER_ARTIFACT_EXTRA_ARGS_DEFAULT}"
PYMENDER_ARTIFACT_EXTRA_ARGS_DEFAULT = ""

PYMENDER_BOOTSTRAP_ARTIFACT ??= "${PYMENDER_BOOTSTRAP_ARTIFACT_DEFAULT}"
PYMENDER_BOOTSTRAP_ARTIFACT_DEFAULT = "1"
PYMENDER_ARTIFACT_NAME_BOOTSTRAP ??= "${PYMENDER_ARTIFACT_NAME_BOOTSTRAP_DEFAULT}"
PYMENDER_ARTIFACT_NAME_BOOTSTRAP_DEFAULT = "${PYMENDER_ARTIFACT_NAME}"
PYMENDER_ARTIFACT_PROVIDES_BOOTSTRAP ??= "${PYMENDER_ARTIFACT_PROVIDES_BOOTSTRAP_DEFAULT}"
PYMENDER_ARTIFACT_PROVIDES_BOOTSTRAP_DEFAULT = ""

PYMENDER_MENDER_UPDATE ??= "${PYMENDER_MENDER_UPDATE_DEFAULT}"
PYMENDER_MENDER_UPDATE_DEFAULT = "0"
PYMENDER_UPDATE_MODULES ??= "${PYMENDER_UPDATE_MODULES_DEFAULT}"
PYMENDER_UPDATE_MODULES_DEFAULT = ""
# The modules the layer ships (recipe pymender-update-modules).
PYMENDER_KNOWN_UPDATE_MODULES = "single-file directory script deb"

PYMENDER_IMAGE_ENABLE ??= "${PYMENDER_IMAGE_ENABLE_DEFAULT}"
PYMENDER_IMAGE_ENABLE_DEFAULT = ""
PYMENDER_IMAGE_TYPES ??= "${PYMENDER_IMAGE_TYPES_DEFAULT}"
PYMENDER_IMAGE_TYPES_DEFAULT = "sdimg"
PYMENDER_IMAGE_BMAP ??= "${PYMENDER_IMAGE_BMAP_DEFAULT}"
PYMENDER_IMAGE_BMAP_DEFAULT = "1"
PYMENDER_ROOTFS_FSTYPE ??= "${PYMENDER_ROOTFS_FSTYPE_DEFAULT}"
PYMENDER_ROOTFS_FSTYPE_DEFAULT = "ext4"

PYMENDER_STORAGE_DEVICE ??= "${PYMENDER_STORAGE_DEVICE_DEFAULT}"
PYMENDER_STORAGE_DEVICE_DEFAULT = "/dev/mmcblk0"
PYMENDER_STORAGE_DEVICE_DEFAULT:qemux86-64 = "/dev/vda"
PYMENDER_STORAGE_DEVICE_DEFAULT:qemuarm64 = "/dev/vda"
PYMENDER_STORAGE_DEVICE_BASE ??= "${PYMENDER_STORAGE_DEVICE_BASE_DEFAULT}"
PYMENDER_STORAGE_DEVICE_BASE_DEFAULT = "${@pymender_device_base(d.getVar('PYMENDER_STORAGE_DEVICE'))}"

PYMENDER_STORAGE_TOTAL_SIZE_MB ??= "${PYMENDER_STORAGE_TOTAL_SIZE_MB_DEFAULT}"
PYMENDER_STORAGE_TOTAL_SIZE_MB_DEFAULT = "1024"
PYMENDER_BOOT_PART_SIZE_MB ??= "${PYMENDER_BOOT_PART_SIZE_MB_DEFAULT}"
PYMENDER_BOOT_PART_SIZE_MB_DEFAULT = "16"
PYMENDER_DATA_PART_SIZE_MB ??= "${PYMENDER_DATA_PART_SIZE_MB_DEFAULT}"
PYMENDER_DATA_PART_SIZE_MB_DEFAULT = "128"
PYMENDER_PARTITION_ALIGNMENT ??= "${PYMENDER_PARTITION_ALIGNMENT_DEFAULT}"
PYMENDER_PARTITION_ALIGNMENT_DEFAULT = "8388608"
PYMENDER_RESERVED_SPACE_BOOTLOADER_DATA ??= "${PYMENDER_RESERVED_SPACE_BOOTLOADER_DATA_DEFAULT}"
PYMENDER_RESERVED_SPACE_BOOTLOADER_DATA_DEFAULT = "0"
PYMENDER_CALC_ROOTFS_SIZE = "${@pymender_calc_rootfs_size_kib(d)}"

PYMENDER_BOOT_PART_MOUNT_LOCATION ??= "${PYMENDER_BOOT_PART_MOUNT_LOCATION_DEFAULT}"
PYMENDER_BOOT_PART_MOUNT_LOCATION_DEFAULT = "${@'/uboot' if d.getVar('PYMENDER_BOOTLOADER') == 'uboot' else '/boot/efi'}"
PYMENDER_BOOT_PART_FSTAB_OPTS ??= "${PYMENDER_BOOT_PART_FSTAB_OPTS_DEFAULT}"
PYMENDER_BOOT_PART_FSTAB_OPTS_DEFAULT = "defaults,nofail"
PYMENDER_DATA_PART_FSTAB_OPTS ??= "${PYMENDER_DATA_PART_FSTAB_OPTS_DEFAULT}"
PYMENDER_DATA_PART_FSTAB_OPTS_DEFAULT = "defaults,nofail${@',x-systemd.growfs' if d.getVar('PYMENDER_GROWFS_DATA') == '1' else ''}"
PYMENDER_GROWFS_DATA ??= "${PYMENDER_GROWFS_DATA_DEFAULT}"
PYMENDER_GROWFS_DATA_DEFAULT = "1"
PYMENDER_DISK_ID ??= "${PYMENDER_DISK_ID_DEFAULT}"
PYMENDER_DISK_ID_DEFAULT = ""
PYMENDER_IMAGE_BOOTLOADER_FILE ??= "${PYMENDER_IMAGE_BOOTLOADER_FILE_DEFAULT}"
PYMENDER_IMAGE_BOOTLOADER_FILE_DEFAULT = ""
PYMENDER_IMAGE_BOOTLOADER_BOOTSECTOR_OFFSET ??= "${PYMENDER_IMAGE_BOOTLOADER_BOOTSECTOR_OFFSET_DEFAULT}"
PYMENDER_IMAGE_BOOTLOADER_BOOTSECTOR_OFFSET_DEFAULT = "2"
PYMENDER_IMAGE_BOOTLOADER_DEPENDS ??= "${PYMENDER_IMAGE_BOOTLOADER_DEPENDS_DEFAULT}"
PYMENDER_IMAGE_BOOTLOADER_DEPENDS_DEFAULT = "${@'%s:do_deploy' % d.getVar('PYMENDER_UBOOT_RECIPES').split()[0] if d.getVar('PYMENDER_IMAGE_BOOTLOADER_FILE') else ''}"
PYMENDER_MBR_BOOTLOADER_FILE ??= "${PYMENDER_MBR_BOOTLOADER_FILE_DEFAULT}"
PYMENDER_MBR_BOOTLOADER_FILE_DEFAULT = ""
PYMENDER_MBR_BOOTLOADER_LENGTH ??= "${PYMENDER_MBR_BOOTLOADER_LENGTH_DEFAULT}"
PYMENDER_MBR_BOOTLOADER_LENGTH_DEFAULT = "440"

PYMENDER_BOOTLOADER ??= "${PYMENDER_BOOTLOADER_DEFAULT}"
PYMENDER_BOOTLOADER_DEFAULT = "grub"
PYMENDER_BOOTLOADER_DEFAULT:arm = "uboot"
PYMENDER_BOOTLOADER_DEFAULT:aarch64 = "uboot"
PYMENDER_UBOOT_RECIPES ??= "${PYMENDER_UBOOT_RECIPES_DEFAULT}"
PYMENDER_UBOOT_RECIPES_DEFAULT = "${@d.getVar('PREFERRED_PROVIDER_virtual/bootloader') or 'u-boot'}"
PYMENDER_KERNEL_IMAGE ??= "${PYMENDER_KERNEL_IMAGE_DEFAULT}"
PYMENDER_KERNEL_IMAGE_DEFAULT = "/boot/${KERNEL_IMAGETYPE}"
PYMENDER_INITRD_IMAGE ??= "${PYMENDER_INITRD_IMAGE_DEFAULT}"
PYMENDER_INITRD_IMAGE_DEFAULT = ""
PYMENDER_KERNEL_ARGS ??= "${PYMENDER_KERNEL_ARGS_DEFAULT}"
PYMENDER_KERNEL_ARGS_DEFAULT = "${PYMENDER_ROOT_MOUNT_MODE}"
PYMENDER_KERNEL_ARGS_DEFAULT:qemux86-64 = "${PYMENDER_ROOT_MOUNT_MODE} console=ttyS0,115200"
PYMENDER_KERNEL_ARGS_DEFAULT:qemuarm64 = "${PYMENDER_ROOT_MOUNT_MODE} console=ttyAMA0,115200"
PYMENDER_KERNEL_ROOT_BASE ??= "${PYMENDER_KERNEL_ROOT_BASE_DEFAULT}"
PYMENDER_KERNEL_ROOT_BASE_DEFAULT = ""
PYMENDER_KERNEL_DEVICETREE ??= "${PYMENDER_KERNEL_DEVICETREE_DEFAULT}"
PYMENDER_KERNEL_DEVICETREE_DEFAULT = ""
PYMENDER_UBOOT_ENV_SIZE ??= "${PYMENDER_UBOOT_ENV_SIZE_DEFAULT}"
PYMENDER_UBOOT_ENV_SIZE_DEFAULT = "0x4000"

# Derived from the layout pymender-image writes (1 boot, 2 rootfs A, 3 rootfs B, 4 data):
# not meant to be set. The runtime files' @PYMENDER_...@ placeholders take these values.
PYMENDER_BOOT_PART_NUMBER = "1"
PYMENDER_ROOTFS_PART_A_NUMBER = "2"
PYMENDER_ROOTFS_PART_B_NUMBER = "3"
PYMENDER_DATA_PART_NUMBER = "4"
PYMENDER_ROOTFS_PART_A_NUMBER_HEX = "${@'%x' % int(d.getVar('PYMENDER_ROOTFS_PART_A_NUMBER'))}"
PYMENDER_ROOTFS_PART_B_NUMBER_HEX = "${@'%x' % int(d.getVar('PYMENDER_ROOTFS_PART_B_NUMBER'))}"
PYMENDER_BOOT_PART = "${PYMENDER_STORAGE_DEVICE_BASE}${PYMENDER_BOOT_PART_NUMBER}"
PYMENDER_ROOTFS_PART_A = "${PYMENDER_STORAGE_DEVICE_BASE}${PYMENDER_ROOTFS_PART_A_NUMBER}"
PYMENDER_ROOTFS_PART_B = "${PYMENDER_STORAGE_DEVICE_BASE}${PYMENDER_ROOTFS_PART_B_NUMBER}"
PYMENDER_DATA_PART = "${PYMENDER_STORAGE_DEVICE_BASE}${PYMENDER_DATA_PART_NUMBER}"
# systemd's name of the data partition (systemd-escape --path): its device unit is this plus
# ".device", its filesystem check systemd-fsck@ this ".service".
PYMENDER_DATA_PART_UNIT = "${@d.getVar('PYMENDER_DATA_PART').strip('/').replace('-', '\\x2d').replace('/', '-')}"
PYMENDER_BOOT_PART_FSTYPE = "vfat"
PYMENDER_DATA_PART_FSTYPE = "ext4"
# "ro" for the read-only filesystems (squashfs), "rw" for the others.
PYMENDER_ROOT_MOUNT_MODE = "${@'ro' if d.getVar('PYMENDER_ROOTFS_FSTYPE').startswith('squashfs') else 'rw'}"
# The root filesystem types whose bytes go into a rootfs partition as they are.
PYMENDER_ROOTFS_FSTYPES_SUPPORTED = "ext4 ext3 ext2 btrfs squashfs squashfs-xz squashfs-lzo squashfs-lz4 squashfs-zst"

# Where an image's content goes that does not stay in its rootfs image (pymender-full's rootfs
# post-processing): what packages installed below /data and below the boot partition's mount
# point, and the Artifact state scripts of pymender-state-scripts recipes.
PYMENDER_DATA_CONTENT = "${WORKDIR}/pymender-data"
# The data partition's content as one disk or data image task puts it together: the above and
# the bootstrap Artifact (pymender-bootstrap-artifact). The image type of the latter, when built.
PYMENDER_DATA_STAGING = "${WORKDIR}/pymender-data-${BB_CURRENTTASK}"
PYMENDER_BOOTSTRAP_IMAGE_TYPE = "${@'bootstrap-artifact' if d.getVar('PYMENDER_BOOTSTRAP_ARTIFACT') == '1' else ''}"
PYMENDER_BOOT_CONTENT = "${WORKDIR}/pymender-boot-content"
PYMENDER_IMAGE_ARTIFACT_SCRIPTS = "${WORKDIR}/pymender-artifact-scripts"
# State scripts (pymender-state-scripts): the rootfs's own (Idle, Sync, Download), the staging
# place of the Artifact ones inside a package, and the version the directories declare.
PYMENDER_ROOTFS_SCRIPTS_DIR = "${sysconfdir}/mender/scripts"
PYMENDER_STATE_SCRIPTS_STAGING = "${datadir}/pymender/artifact-scripts"
PYMENDER_STATE_SCRIPTS_VERSION = "3"

# Where SRC_URI files are unpacked: UNPACKDIR from styhead on, WORKDIR on scarthgap.
PYMENDER_UNPACKDIR = "${@d.getVar('UNPACKDIR') or d.getVar('WORKDIR')}"

# Every name above, for the "typo?" check of pymender-full (the _DEFAULT forms are implied).
PYMENDER_KNOWN_VARIABLES = "\
    PYMENDER_ARTIFACT_NAME PYMENDER_DEVICE_TYPE PYMENDER_DEVICE_TYPES_COMPATIBLE \
    PYMENDER_ARTIFACT_SIGNING_KEY PYMENDER_ARTIFACT_VERIFY_KEY PYMENDER_ARTIFACT_SCRIPTS_DIR \
    PYMENDER_SERVER_URL PYMENDER_TENANT_TOKEN PYMENDER_SERVER_CERTIFICATE \
    PYMENDER_ARTIFACT_PROVIDES PYMENDER_ARTIFACT_PROVIDES_GROUP PYMENDER_ARTIFACT_DEPENDS \
    PYMENDER_ARTIFACT_DEPENDS_GROUPS PYMENDER_ARTIFACT_NAME_DEPENDS PYMENDER_ARTIFACT_EXTRA_ARGS \
    PYMENDER_BOOTSTRAP_ARTIFACT PYMENDER_ARTIFACT_NAME_BOOTSTRAP PYMENDER_ARTIFACT_PROVIDES_BOOTSTRAP \
    PYMENDER_MENDER_UPDATE PYMENDER_UPDATE_MODULES PYMENDER_KNOWN_UPDATE_MODULES \
    PYMENDER_BOOTSTRAP_ARGS PYMENDER_BOOTSTRAP_IMAGE_TYPE PYMENDER_DATA_STAGING \
    PYMENDER_IMAGE_ENABLE PYMENDER_IMAGE_TYPES PYMENDER_IMAGE_BMAP PYMENDER_ROOTFS_FSTYPE \
    PYMENDER_STORAGE_DEVICE PYMENDER_STORAGE_DEVICE_BASE PYMENDER_STORAGE_TOTAL_SIZE_MB \
    PYMENDER_BOOT_PART_SIZE_MB PYMENDER_DATA_PART_SIZE_MB PYMENDER_PARTITION_ALIGNMENT \
    PYMENDER_RESERVED_SPACE_BOOTLOADER_DATA PYMENDER_CALC_ROOTFS_SIZE \
    PYMENDER_BOOT_PART_MOUNT_LOCATION PYMENDER_BOOT_PART_FSTAB_OPTS PYMENDER_DATA_PART_FSTAB_OPTS \
    PYMENDER_GROWFS_DATA PYMENDER_DISK_ID PYMENDER_IMAGE_BOOTLOADER_FILE \
    PYMENDER_IMAGE_BOOTLOADER_BOOTSECTOR_OFFSET PYMENDER_IMAGE_BOOTLOADER_DEPENDS \
    PYMENDER_MBR_BOOTLOADER_FILE PYMENDER_MBR_BOOTLOADER_LENGTH \
    PYMENDER_BOOTLOADER PYMENDER_UBOOT_RECIPES PYMENDER_KERNEL_IMAGE PYMENDER_INITRD_IMAGE \
    PYMENDER_KERNEL_ARGS PYMENDER_KERNEL_ROOT_BASE PYMENDER_KERNEL_DEVICETREE PYMENDER_UBOOT_ENV_SIZE \
    PYMENDER_SOURCE PYMENDER_SRC_DIR PYMENDER_GIT_URI PYMENDER_GIT_SRCREV \
    PYMENDER_BOOT_PART_NUMBER PYMENDER_ROOTFS_PART_A_NUMBER PYMENDER_ROOTFS_PART_B_NUMBER \
    PYMENDER_DATA_PART_NUMBER PYMENDER_ROOTFS_PART_A_NUMBER_HEX PYMENDER_ROOTFS_PART_B_NUMBER_HEX \
    PYMENDER_BOOT_PART PYMENDER_ROOTFS_PART_A PYMENDER_ROOTFS_PART_B PYMENDER_DATA_PART PYMENDER_DATA_PART_UNIT \
    PYMENDER_BOOT_PART_FSTYPE PYMENDER_DATA_PART_FSTYPE PYMENDER_ROOT_MOUNT_MODE \
    PYMENDER_ROOTFS_FSTYPES_SUPPORTED PYMENDER_UNPACKDIR PYMENDER_KNOWN_VARIABLES \
    PYMENDER_ARTIFACT_ARGS PYMENDER_IMAGE_ARGS PYMENDER_STATE_SCRIPTS_DIR \
    PYMENDER_ROOTFS_SCRIPTS_DIR PYMENDER_STATE_SCRIPTS_STAGING PYMENDER_STATE_SCRIPTS_VERSION PYMENDER_IMAGE_ARTIFACT_SCRIPTS PYMENDER_KNOWN_IMAGE_TYPES \
    PYMENDER_FOREIGN_IMAGE_TYPES PYMENDER_IMAGE_ROOTFS_SIZE PYMENDER_DATA_CONTENT PYMENDER_BOOT_CONTENT PYMENDER_BOOT_FILES_DEPENDS \
    PYMENDER_BOOT_FILES_DIR PYMENDER_PART_IMAGE_DEPENDS PYMENDER_DATAIMG_ARGS PYMENDER_DATA_IMAGE_TYPE \
"

def pymender_device_base(device):
    """Partition names are the disk name plus the number, with "p" when the disk ends in a digit."""
    device = device or ""
    return device + "p" if device[-1:].isdigit() else device

def pymender_whole_number(name, value):
    """``value`` (the value of variable ``name``) as an int; a clear stop when it is not one."""
    value = (value or "").strip()
    if not value.isdigit():
        bb.fatal("%s must be a whole number, not '%s'" % (name, value))
    return int(value)

def pymender_calc_rootfs_size_kib(d):
    """Each rootfs partition in KiB: the formula of `pymender-image rootfs-size` (and meta-mender).

    Every variable is read by name here, so BitBake knows which ones the value depends on."""
    total = pymender_whole_number("PYMENDER_STORAGE_TOTAL_SIZE_MB", d.getVar("PYMENDER_STORAGE_TOTAL_SIZE_MB"))
    boot = pymender_whole_number("PYMENDER_BOOT_PART_SIZE_MB", d.getVar("PYMENDER_BOOT_PART_SIZE_MB"))
    data = pymender_whole_number("PYMENDER_DATA_PART_SIZE_MB", d.getVar("PYMENDER_DATA_PART_SIZE_MB"))
    align = pymender_whole_number("PYMENDER_PARTITION_ALIGNMENT", d.getVar("PYMENDER_PARTITION_ALIGNMENT"))
    reserved = pymender_whole_number("PYMENDER_RESERVED_SPACE_BOOTLOADER_DATA",
                                     d.getVar("PYMENDER_RESERVED_SPACE_BOOTLOADER_DATA"))
    if align == 0 or align % 1024:
        bb.fatal("PYMENDER_PARTITION_ALIGNMENT must be a non-zero multiple of 1024 bytes")
    mib = 1024 * 1024
    def up(size):
        return -(-size // align) * align
    free = total * mib - up(boot * mib) - up(data * mib) - 2 * align - reserved
    size = (free // 2) // align * align
    if size <= 0:
        bb.fatal("no room for the rootfs partitions: raise PYMENDER_STORAGE_TOTAL_SIZE_MB "
                 "(now %s) or lower the boot or data size" % total)
    return str(size // 1024)

def pymender_render(d, template, output):
    """Write template with each @PYMENDER_NAME@ replaced by that variable; none may be left."""
    import re
    with open(template, encoding="utf-8") as source:
        text = source.read()
    def value(match):
        name = match.group(1)
        found = d.getVar(name)
        if found is None:
            bb.fatal("%s: %s is not set" % (os.path.basename(template), name))
        return found
    text = re.sub(r"@(PYMENDER_[A-Z0-9_]+)@", value, text)
    left = re.findall(r"@[A-Z0-9_]+@", text)
    if left:
        bb.fatal("%s: no value for %s" % (os.path.basename(template), ", ".join(left)))
    bb.utils.mkdirhier(os.path.dirname(output))
    with open(output, "w", encoding="utf-8") as out:
        out.write(text)
