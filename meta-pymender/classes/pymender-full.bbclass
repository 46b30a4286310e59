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
#   - the pymender updater in every image (IMAGE_INSTALL), with its systemd unit installed and
#     disabled (standalone mode: run `pymender install`, `commit`, `rollback` yourself or from
#     scripts; SYSTEMD_AUTO_ENABLE:pn-pymender = "enable" turns the unit on);
#   - the image types "mender" (the update Artifact) and ${PYMENDER_IMAGE_TYPES} (the disk
#     image: sdimg, uefiimg) in IMAGE_FSTYPES, and the ext4 rootfs they are made from, sized
#     to fill a rootfs partition;
#   - /etc/fstab lines mounting the boot partition and /data;
#   - the boot loader integration PYMENDER_BOOTLOADER selects:
#     "grub": GRUB as EFI boot loader with pymender's boot script and two-copy environment;
#     "uboot": pymender's boot.scr and the two redundant environment files (uboot.env,
#     uboot-redund.env) on the boot partition, mounted at /uboot, and /etc/fw_env.config
#     naming them, with libubootenv's fw_printenv/fw_setenv (recipe pymender-ubootenv). The
#     board's U-Boot must run boot.scr from partition 1 (distro boot does); it is not built
#     or placed on the disk by this layer.
#
# Checks made once the configuration is read:
#   - PYMENDER_ARTIFACT_NAME must be set;
#   - systemd must be the init manager (INIT_MANAGER = "systemd");
#   - PYMENDER_BOOTLOADER must be "grub" or "uboot";
#   - every PYMENDER_* variable set must be one the layer knows (a warning names it: typo?).
#
# All variables and their defaults: pymender-setup.bbclass and the layer's README.md.

inherit pymender-setup

DISTROOVERRIDES .= ":pymender-full"

IMAGE_CLASSES += "pymender-part-images pymender-artifactimg"
IMAGE_FSTYPES:append = " ${@pymender_image_fstypes(d)}"
IMAGE_INSTALL:append = " ${@'' if pymender_is_initramfs(d) else 'pymender kernel-image ' + pymender_bootloader_packages(d)}"

# The rootfs image fills a rootfs partition; oe-core's upper bound would only get in the way
# of the size check, which names PYMENDER_STORAGE_TOTAL_SIZE_MB.
IMAGE_ROOTFS_SIZE ?= "${PYMENDER_CALC_ROOTFS_SIZE}"
IMAGE_ROOTFS_MAXSIZE:forcevariable = ""

def pymender_is_initramfs(d):
    """Initramfs image recipes take their types from INITRAMFS_FSTYPES; pymender leaves them be."""
    return "INITRAMFS_FSTYPES" in (d.getVar("IMAGE_FSTYPES", False) or "")

def pymender_bootloader_packages(d):
    """Packages the boot loader integration adds to the image."""
    return "pymender-ubootenv" if d.getVar("PYMENDER_BOOTLOADER") == "uboot" else ""

def pymender_image_fstypes(d):
    """The image types pymender adds: the Artifact and the disk images."""
    if pymender_is_initramfs(d):
        return ""
    types = ["mender"] + (d.getVar("PYMENDER_IMAGE_TYPES") or "").split()
    return " ".join(types)

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
    for image_type in (d.getVar("PYMENDER_IMAGE_TYPES") or "").split():
        if image_type not in ("sdimg", "uefiimg"):
            bb.fatal("PYMENDER_IMAGE_TYPES: unknown disk image type \"%s\" (sdimg, uefiimg)" % image_type)
}
