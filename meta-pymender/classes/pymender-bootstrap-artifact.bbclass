# pymender-bootstrap-artifact.bbclass: the image type "bootstrap-artifact", and the data
# partition's content with it.
#
# Added to IMAGE_CLASSES by pymender-full. With PYMENDER_BOOTSTRAP_ARTIFACT = "1" (the default)
# the disk images and the dataimg depend on this type, and their data partition holds its file
# as /data/pymender/bootstrap.mender (mode 0400), as meta-mender's mender-bootstrap-artifact puts
# its own on /data/mender. The device installs it before its first use and removes it (as
# Mender 4.x and 5.x do): from the start it knows the name and provides of the software it runs,
# so Artifacts that depend on them install on a new device. What goes into it, written by
# `pymender-artifact write bootstrap-artifact` (pymender-native):
#   PYMENDER_ARTIFACT_NAME_BOOTSTRAP  -n (default: PYMENDER_ARTIFACT_NAME)
#   PYMENDER_DEVICE_TYPES_COMPATIBLE  one -t per type
#   PYMENDER_ARTIFACT_NAME            -p rootfs-image.version:<name>, the provides of the update
#                                     Artifact of the same image
#   the rootfs image's SHA-256        -p rootfs-image.checksum:<sha256 of the rootfs image>
#                                     (the ${PYMENDER_ROOTFS_FSTYPE} image in the partitions)
#                                     --clears-provides rootfs-image.*
#   PYMENDER_ARTIFACT_PROVIDES,       one -p per KEY:VALUE
#   PYMENDER_ARTIFACT_PROVIDES_BOOTSTRAP
#   PYMENDER_ARTIFACT_PROVIDES_GROUP  -g
#   PYMENDER_ARTIFACT_SIGNING_KEY     -k (the device does not check the bootstrap Artifact's
#                                     signature, as Mender does not; signed all the same)
# No depends: on a new device there is nothing to depend on.

inherit pymender-setup

IMAGE_TYPEDEP:bootstrap-artifact = "${PYMENDER_ROOTFS_FSTYPE}"
do_image_bootstrap_artifact[depends] += "pymender-native:do_populate_sysroot \
                                         ${@'python3-cryptography-native:do_populate_sysroot' if d.getVar('PYMENDER_ARTIFACT_SIGNING_KEY') else ''}"
do_image_bootstrap_artifact[file-checksums] += "${@'%s:True' % d.getVar('PYMENDER_ARTIFACT_SIGNING_KEY') if d.getVar('PYMENDER_ARTIFACT_SIGNING_KEY') else ''}"

# Options of `pymender-artifact write bootstrap-artifact` that come from variables, each read
# by name, so BitBake makes a new bootstrap Artifact when one changes.
PYMENDER_BOOTSTRAP_ARGS = "${@pymender_bootstrap_args(d)}"

def pymender_bootstrap_args(d):
    import shlex
    name = (d.getVar("PYMENDER_ARTIFACT_NAME_BOOTSTRAP") or "").strip()
    version = (d.getVar("PYMENDER_ARTIFACT_NAME") or "").strip()
    if not name or not version:
        bb.fatal("PYMENDER_ARTIFACT_NAME is not set: the bootstrap Artifact needs the name of the "
                 "software the image holds")
    args = ["-n", name, "-p", "rootfs-image.version:" + version, "--clears-provides", "rootfs-image.*"]
    for device_type in (d.getVar("PYMENDER_DEVICE_TYPES_COMPATIBLE") or "").split():
        args += ["-t", device_type]
    if d.getVar("PYMENDER_ARTIFACT_SIGNING_KEY"):
        args += ["-k", d.getVar("PYMENDER_ARTIFACT_SIGNING_KEY")]
    for value in (d.getVar("PYMENDER_ARTIFACT_PROVIDES") or "").split() + \
            (d.getVar("PYMENDER_ARTIFACT_PROVIDES_BOOTSTRAP") or "").split():
        args += ["-p", value]
    if d.getVar("PYMENDER_ARTIFACT_PROVIDES_GROUP"):
        args += ["-g", d.getVar("PYMENDER_ARTIFACT_PROVIDES_GROUP")]
    return " ".join(shlex.quote(arg) for arg in args)

pymender_bootstrap_image() {
    rootfs="${IMGDEPLOYDIR}/${IMAGE_NAME}.${PYMENDER_ROOTFS_FSTYPE}"
    checksum=$(sha256sum --binary "$rootfs" | cut -d' ' -f1)
    if [ -z "$checksum" ]; then
        bbfatal "pymender: cannot compute the SHA-256 of $rootfs"
    fi
    pymender-artifact write bootstrap-artifact ${PYMENDER_BOOTSTRAP_ARGS} -p "rootfs-image.checksum:$checksum" \
        --no-progress -o "${IMGDEPLOYDIR}/${IMAGE_NAME}.bootstrap-artifact"
}

IMAGE_CMD:bootstrap-artifact = "pymender_bootstrap_image"

# The data partition's content for one disk or data image task, in its own directory (image
# tasks run side by side): what packages installed below /data, and the bootstrap Artifact.
pymender_stage_data() {
    rm -rf "${PYMENDER_DATA_STAGING}"
    install -d "${PYMENDER_DATA_CONTENT}" "${PYMENDER_DATA_STAGING}"
    cp -a "${PYMENDER_DATA_CONTENT}/." "${PYMENDER_DATA_STAGING}/"
    if [ -n "${PYMENDER_BOOTSTRAP_IMAGE_TYPE}" ]; then
        install -d "${PYMENDER_DATA_STAGING}/pymender"
        install -m 0400 "${IMGDEPLOYDIR}/${IMAGE_NAME}.bootstrap-artifact" \
            "${PYMENDER_DATA_STAGING}/pymender/bootstrap.mender"
    fi
}
