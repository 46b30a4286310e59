# pymender-full.bbclass: the whole pymender standalone A/B setup, switched on in one line.
#
# Usage (local.conf, distro or kas file):
#     INHERIT += "pymender-full"
#     INIT_MANAGER = "systemd"
#     PYMENDER_ARTIFACT_NAME = "release-1"
#
# What it turns on:
#   - the override "pymender-full" (in DISTROOVERRIDES): the layer's bbappends are read only when
#     it is set, so without this class the layer changes nothing;
#   - in every image that pymender applies to (PYMENDER_IMAGE_ENABLE: all but initramfs and
#     container images, unless told otherwise), and only there:
#       - the updater (pymender, pymender-config with this machine's configuration and device
#         type, the kernel image in /boot, the boot loader integration's packages), with its
#         systemd unit installed and disabled (standalone mode: run `pymender install`,
#         `commit`, `rollback` yourself or from scripts; SYSTEMD_AUTO_ENABLE:pn-pymender =
#         "enable" turns the unit on);
#       - the image types "mender" (the update Artifact) and ${PYMENDER_IMAGE_TYPES} (the disk
#         image: sdimg, uefiimg; dataimg), made from the ${PYMENDER_ROOTFS_FSTYPE} rootfs, which
#         is sized to fill a rootfs partition exactly (IMAGE_ROOTFS_SIZE is the partition minus
#         IMAGE_ROOTFS_EXTRA_SPACE); with PYMENDER_BOOTSTRAP_ARTIFACT = "1", a bootstrap
#         Artifact on the data partition (image type "bootstrap-artifact");
#       - with PYMENDER_MENDER_UPDATE = "1", the mender-update command (pymender-mender-update);
#       - /data and the boot partition's mount point kept empty in the rootfs: what packages
#         install below /data goes to the data partition (and the dataimg), what they install
#         below the boot partition's mount point goes to the boot partition;
#       - on QEMU machines, the firmware the disk image boots with (OVMF for GRUB, the U-Boot
#         recipe for U-Boot), for scripts/pymender-qemu;
#   - /etc/fstab lines mounting the boot partition and /data, and both mount points in the
#     rootfs (base-files), so a read-only rootfs boots too;
#   - the boot loader integration PYMENDER_BOOTLOADER selects:
#     "grub": GRUB as EFI boot loader with pymender's boot script and two-copy environment, and
#     "efi" in MACHINE_FEATURES (linux-yocto then builds the kernel's EFI stub, which GRUB needs
#     to start a kernel on arm64 and uses on x86-64);
#     "uboot": pymender's boot.scr and the two redundant environment files (uboot.env,
#     uboot-redund.env) on the boot partition, mounted at /uboot, /etc/fw_env.config naming
#     them, libubootenv's fw_printenv/fw_setenv (recipe pymender-ubootenv), and in the recipes
#     that build the board's U-Boot (PYMENDER_UBOOT_RECIPES, default: the virtual/bootloader
#     provider): a configuration fragment with the commands boot.scr runs, and a check that
#     the board's CONFIG_ENV_SIZE holds PYMENDER_UBOOT_ENV_SIZE.
#
# Checks made once the configuration is read:
#   - PYMENDER_ARTIFACT_NAME must be set;
#   - systemd must be the init manager (INIT_MANAGER = "systemd");
#   - PYMENDER_BOOTLOADER must be "grub" or "uboot";
#   - PYMENDER_IMAGE_TYPES and PYMENDER_ROOTFS_FSTYPE must name known types;
#   - PYMENDER_BOOTSTRAP_ARTIFACT and PYMENDER_MENDER_UPDATE must be "1" or "0";
#   - every PYMENDER_* variable set must be one the layer knows (a warning names it: typo?).
#
# All variables and their defaults: pymender-setup.bbclass and the layer's README.md.

inherit pymender-setup

DISTROOVERRIDES .= ":pymender-full"

IMAGE_CLASSES += "pymender-part-images pymender-artifactimg pymender-dataimg pymender-bootstrap-artifact"

# GRUB starts the kernel through its EFI stub; linux-yocto builds it for "efi" machines.
MACHINE_FEATURES:append = " ${@'efi' if d.getVar('PYMENDER_BOOTLOADER') == 'grub' else ''}"

# The image types the disk images may be; dataimg is the data partition on its own.
PYMENDER_KNOWN_IMAGE_TYPES = "sdimg uefiimg dataimg"
# Image types that hold no root filesystem for a partition: images made only of these are
# initramfs or container images, which pymender leaves alone.
PYMENDER_FOREIGN_IMAGE_TYPES = "cpio container oci"

def pymender_image_applies(d):
    """True for the image recipes pymender turns into an Artifact and a disk image."""
    if not bb.data.inherits_class("image", d):
        return False
    setting = (d.getVar("PYMENDER_IMAGE_ENABLE") or "").strip()
    if setting in ("0", "1"):
        return setting == "1"
    if setting:
        bb.fatal("PYMENDER_IMAGE_ENABLE must be \"1\", \"0\" or empty (decide by image type), not \"%s\"" % setting)
    if d.getVar("PN") in (d.getVar("INITRAMFS_IMAGE") or "").split():
        return False
    foreign = (d.getVar("PYMENDER_FOREIGN_IMAGE_TYPES") or "").split()
    types = (d.getVar("IMAGE_FSTYPES") or "").split()
    return any(image_type.split(".")[0] not in foreign for image_type in types)

def pymender_bootloader_packages(d):
    """Packages the boot loader integration adds to the image."""
    return "pymender-ubootenv" if d.getVar("PYMENDER_BOOTLOADER") == "uboot" else ""

def pymender_qemu_firmware(d):
    """What a QEMU machine boots the disk image with, built with the image (pymender-qemu)."""
    if "qemuall" not in (d.getVar("MACHINEOVERRIDES") or "").split(":"):
        return ""
    if d.getVar("PYMENDER_BOOTLOADER") == "uboot":
        return d.getVar("PYMENDER_UBOOT_RECIPES").split()[0]
    if d.getVar("TARGET_ARCH") in ("x86_64", "i686", "i586"):
        return "ovmf"
    return ""

def pymender_setup_image(d):
    """Make an image a pymender image: its types, its packages, its rootfs size and content."""
    types = ["mender"] + (d.getVar("PYMENDER_IMAGE_TYPES") or "").split()
    d.appendVar("IMAGE_FSTYPES", " " + " ".join(types))
    packages = "pymender pymender-config kernel-image " + pymender_bootloader_packages(d)
    if d.getVar("PYMENDER_GROWFS_DATA") == "1":
        packages += " pymender-growfs-data"
    if d.getVar("PYMENDER_MENDER_UPDATE") == "1":
        packages += " pymender-mender-update"
    for module in (d.getVar("PYMENDER_UPDATE_MODULES") or "").split():
        packages += " pymender-update-modules-" + module
    d.appendVar("IMAGE_INSTALL", " " + packages)
    # The rootfs image fills a rootfs partition: oe-core adds IMAGE_ROOTFS_EXTRA_SPACE to
    # IMAGE_ROOTFS_SIZE (image.bbclass, get_rootfs_size), so that much is taken off here.
    d.setVar("IMAGE_ROOTFS_SIZE", "${PYMENDER_IMAGE_ROOTFS_SIZE}")
    d.appendVar("ROOTFS_POSTPROCESS_COMMAND", " pymender_rootfs_postprocess")
    firmware = pymender_qemu_firmware(d)
    if firmware:
        d.appendVar("EXTRA_IMAGEDEPENDS", " " + firmware)

# IMAGE_ROOTFS_SIZE of a pymender image, KiB: the rootfs partition less the extra space oe-core
# adds (an arithmetic expression: core-image-minimal appends " + 4096" with systemd).
PYMENDER_IMAGE_ROOTFS_SIZE = "${@str(int(d.getVar('PYMENDER_CALC_ROOTFS_SIZE')) - int(eval(d.getVar('IMAGE_ROOTFS_EXTRA_SPACE') or '0')))}"

def pymender_setup_uboot(d):
    """The recipe that builds the board's U-Boot: pymender's configuration fragments, and the
    check of the environment size against the board's configuration."""
    # The fragments are in this layer's recipes-bsp/u-boot/files, which BBPATH leads to.
    found = bb.utils.which(d.getVar("BBPATH"), "recipes-bsp/u-boot/files/pymender-boot-script.cfg")
    if not found:
        bb.fatal("pymender: recipes-bsp/u-boot/files of meta-pymender is not on BBPATH")
    d.prependVar("FILESEXTRAPATHS", os.path.dirname(found) + ":")
    d.appendVar("SRC_URI", " file://pymender-boot-script.cfg")
    fstype = d.getVar("PYMENDER_ROOTFS_FSTYPE")
    if fstype.startswith("squashfs"):
        d.appendVar("SRC_URI", " file://pymender-rootfs-squashfs.cfg")
    elif fstype == "btrfs":
        d.appendVar("SRC_URI", " file://pymender-rootfs-btrfs.cfg")
    bb.build.addtask("do_pymender_check_uboot_env", "do_compile", "do_configure", d)

python () {
    if pymender_image_applies(d):
        pymender_setup_image(d)
    if d.getVar("PYMENDER_BOOTLOADER") == "uboot" and \
            d.getVar("PN") in d.getVar("PYMENDER_UBOOT_RECIPES").split() and \
            d.getVar("CLASSOVERRIDE") == "class-target":
        pymender_setup_uboot(d)
}

# Runs after do_rootfs installed the packages. /data and the boot partition's mount point stay
# empty directories in the rootfs image (they are mount points): their content moves to
# PYMENDER_DATA_CONTENT and PYMENDER_BOOT_CONTENT, from where the disk images put it into the
# data and boot partitions. The Artifact state scripts that recipes install (pymender-state-
# scripts) move to PYMENDER_IMAGE_ARTIFACT_SCRIPTS, from where they go into the Artifact. When
# the rootfs has state scripts of its own, their directory gets its version file.
pymender_rootfs_postprocess() {
    for pair in "/data ${PYMENDER_DATA_CONTENT}" \
            "${PYMENDER_BOOT_PART_MOUNT_LOCATION} ${PYMENDER_BOOT_CONTENT}" \
            "${PYMENDER_STATE_SCRIPTS_STAGING} ${PYMENDER_IMAGE_ARTIFACT_SCRIPTS}"; do
        set -- $pair
        rm -rf "$2"
        install -d "$2"
        if [ -d "${IMAGE_ROOTFS}$1" ]; then
            find "${IMAGE_ROOTFS}$1" -mindepth 1 -maxdepth 1 -exec mv -t "$2" {} +
        fi
    done
    install -d "${IMAGE_ROOTFS}/data" "${IMAGE_ROOTFS}${PYMENDER_BOOT_PART_MOUNT_LOCATION}"
    rmdir -p --ignore-fail-on-non-empty "${IMAGE_ROOTFS}${PYMENDER_STATE_SCRIPTS_STAGING}" 2>/dev/null || true
    scripts="${IMAGE_ROOTFS}${PYMENDER_ROOTFS_SCRIPTS_DIR}"
    if [ -d "$scripts" ] && [ -n "$(ls -A "$scripts")" ]; then
        printf '%s\n' "${PYMENDER_STATE_SCRIPTS_VERSION}" > "$scripts/version"
    fi
}

# The U-Boot build's configuration (one .config, or one per UBOOT_CONFIG build directory).
python do_pymender_check_uboot_env() {
    import glob, re
    wanted = int(d.getVar("PYMENDER_UBOOT_ENV_SIZE"), 16)
    configs = sorted(glob.glob(os.path.join(d.getVar("B"), ".config")) +
                     glob.glob(os.path.join(d.getVar("B"), "*", ".config")))
    if not configs:
        bb.fatal("pymender: no U-Boot .config in %s to check CONFIG_ENV_SIZE against "
                 "PYMENDER_UBOOT_ENV_SIZE" % d.getVar("B"))
    for config in configs:
        with open(config, encoding="utf-8", errors="replace") as text:
            found = re.search(r"^CONFIG_ENV_SIZE=(0x[0-9a-fA-F]+|[0-9]+)$", text.read(), re.M)
        if not found:
            bb.fatal("pymender: %s has no CONFIG_ENV_SIZE; pymender's boot.scr needs U-Boot's "
                     "environment commands" % config)
        size = int(found.group(1), 0)
        if size < wanted:
            bb.fatal("pymender: PYMENDER_UBOOT_ENV_SIZE (%s) is larger than the board's "
                     "CONFIG_ENV_SIZE (0x%x, %s): set PYMENDER_UBOOT_ENV_SIZE = \"0x%x\" or less"
                     % (d.getVar("PYMENDER_UBOOT_ENV_SIZE"), size, config, size))
        if size > 0x400000:
            bb.fatal("pymender: the board's CONFIG_ENV_SIZE (0x%x, %s) is over 4 MiB, the room "
                     "boot.scr keeps between its scratch buffers" % (size, config))
}
do_pymender_check_uboot_env[vardeps] += "PYMENDER_UBOOT_ENV_SIZE"

addhandler pymender_check_configuration
pymender_check_configuration[eventmask] = "bb.event.ConfigParsed"
python pymender_check_configuration() {
    known = set((d.getVar("PYMENDER_KNOWN_VARIABLES") or "").split())
    for name in sorted(d.keys()):
        base = name.split(":")[0]
        if not base.startswith("PYMENDER_"):
            continue
        if base in known or (base.endswith("_DEFAULT") and base[:-len("_DEFAULT")] in known):
            continue
        bb.warn("%s is not a pymender variable (typo?); the known ones are listed in "
                "meta-pymender's README.md" % base)

    if not (d.getVar("PYMENDER_ARTIFACT_NAME") or "").strip():
        bb.fatal("PYMENDER_ARTIFACT_NAME is not set: pymender-full needs the name of the "
                 "software the image holds, e.g. PYMENDER_ARTIFACT_NAME = \"release-1\" in local.conf")
    if not bb.utils.contains("DISTRO_FEATURES", "systemd", True, False, d):
        bb.fatal("pymender-full needs systemd as init manager: set INIT_MANAGER = \"systemd\"")
    bootloader = d.getVar("PYMENDER_BOOTLOADER")
    if bootloader not in ("grub", "uboot"):
        bb.fatal("PYMENDER_BOOTLOADER must be \"grub\" or \"uboot\", not \"%s\"" % bootloader)
    known_types = d.getVar("PYMENDER_KNOWN_IMAGE_TYPES").split()
    for image_type in (d.getVar("PYMENDER_IMAGE_TYPES") or "").split():
        if image_type not in known_types:
            bb.fatal("PYMENDER_IMAGE_TYPES: unknown image type \"%s\" (%s)" % (image_type, ", ".join(known_types)))
    for name in ("PYMENDER_BOOTSTRAP_ARTIFACT", "PYMENDER_MENDER_UPDATE"):
        if d.getVar(name) not in ("0", "1"):
            bb.fatal("%s must be \"1\" or \"0\", not \"%s\"" % (name, d.getVar(name)))
    known_modules = d.getVar("PYMENDER_KNOWN_UPDATE_MODULES").split()
    for module in (d.getVar("PYMENDER_UPDATE_MODULES") or "").split():
        if module not in known_modules:
            bb.fatal("PYMENDER_UPDATE_MODULES: unknown Update Module \"%s\" (%s)" % (module, ", ".join(known_modules)))
    fstypes = d.getVar("PYMENDER_ROOTFS_FSTYPES_SUPPORTED").split()
    if d.getVar("PYMENDER_ROOTFS_FSTYPE") not in fstypes:
        bb.fatal("PYMENDER_ROOTFS_FSTYPE: \"%s\" is not one of %s" % (d.getVar("PYMENDER_ROOTFS_FSTYPE"), ", ".join(fstypes)))
}
