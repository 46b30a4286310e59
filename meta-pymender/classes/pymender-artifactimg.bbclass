# pymender-artifactimg.bbclass: the image type "mender", the update Artifact of an image.
#
# Added to IMAGE_CLASSES by pymender-full. The Artifact is written by
# `pymender-artifact write rootfs-image` (pymender-native) from the image's
# ${PYMENDER_ROOTFS_FSTYPE} rootfs, after the rootfs size check. What goes into it:
#   PYMENDER_ARTIFACT_NAME            -n (mandatory)
#   PYMENDER_DEVICE_TYPES_COMPATIBLE  one -t per type
#   PYMENDER_ARTIFACT_SIGNING_KEY     -k: the Artifact is signed (RSA or ECDSA P-256 PEM key)
#   state scripts                     one -s per Artifact state script: those of the recipes in
#                                     the image that inherit pymender-state-scripts, and the
#                                     files of PYMENDER_ARTIFACT_SCRIPTS_DIR
#   PYMENDER_ARTIFACT_PROVIDES        one -p per KEY:VALUE
#   PYMENDER_ARTIFACT_PROVIDES_GROUP  -g
#   PYMENDER_ARTIFACT_DEPENDS         one -d per KEY:VALUE
#   PYMENDER_ARTIFACT_DEPENDS_GROUPS  one -G per group
#   PYMENDER_ARTIFACT_NAME_DEPENDS    one -N per name
#   PYMENDER_ARTIFACT_EXTRA_ARGS      added as written (e.g. "--compression lzma")
# Signing needs python3-cryptography-native (oe-core); zstd compression needs
# python3-zstandard-native (meta-python), which the class does not add.

inherit pymender-setup pymender-size-check

IMAGE_TYPEDEP:mender = "${PYMENDER_ROOTFS_FSTYPE}"
do_image_mender[depends] += "pymender-native:do_populate_sysroot \
                               ${@'python3-cryptography-native:do_populate_sysroot' if d.getVar('PYMENDER_ARTIFACT_SIGNING_KEY') else ''}"
do_image_mender[prefuncs] += "pymender_check_rootfs_size"
# A new key, or changed scripts, make a new Artifact.
do_image_mender[file-checksums] += "${@pymender_artifact_file_checksums(d)}"

# Options of `pymender-artifact write rootfs-image` that come from variables. Each variable is
# read by name, so BitBake makes a new Artifact when one changes.
PYMENDER_ARTIFACT_ARGS = "${@pymender_artifact_args(d)}"

def pymender_artifact_args(d):
    import shlex
    name = (d.getVar("PYMENDER_ARTIFACT_NAME") or "").strip()
    if not name:
        bb.fatal("PYMENDER_ARTIFACT_NAME is not set: the \"mender\" image type needs the name "
                 "of the software the image holds, e.g. PYMENDER_ARTIFACT_NAME = \"release-1\"")
    args = ["-n", name]
    for device_type in (d.getVar("PYMENDER_DEVICE_TYPES_COMPATIBLE") or "").split():
        args += ["-t", device_type]
    if d.getVar("PYMENDER_ARTIFACT_SIGNING_KEY"):
        args += ["-k", d.getVar("PYMENDER_ARTIFACT_SIGNING_KEY")]
    for value in (d.getVar("PYMENDER_ARTIFACT_PROVIDES") or "").split():
        args += ["-p", value]
    if d.getVar("PYMENDER_ARTIFACT_PROVIDES_GROUP"):
        args += ["-g", d.getVar("PYMENDER_ARTIFACT_PROVIDES_GROUP")]
    for value in (d.getVar("PYMENDER_ARTIFACT_DEPENDS") or "").split():
        args += ["-d", value]
    for value in (d.getVar("PYMENDER_ARTIFACT_DEPENDS_GROUPS") or "").split():
        args += ["-G", value]
    for value in (d.getVar("PYMENDER_ARTIFACT_NAME_DEPENDS") or "").split():
        args += ["-N", value]
    return " ".join(shlex.quote(arg) for arg in args)

def pymender_artifact_file_checksums(d):
    entries = []
    if d.getVar("PYMENDER_ARTIFACT_SIGNING_KEY"):
        entries.append("%s:True" % d.getVar("PYMENDER_ARTIFACT_SIGNING_KEY"))
    if d.getVar("PYMENDER_ARTIFACT_SCRIPTS_DIR"):
        entries.append("%s/*:True" % d.getVar("PYMENDER_ARTIFACT_SCRIPTS_DIR"))
    return " ".join(entries)

pymender_artifact_image() {
    rootfs="${IMGDEPLOYDIR}/${IMAGE_NAME}.${PYMENDER_ROOTFS_FSTYPE}"
    set --
    for directory in "${PYMENDER_IMAGE_ARTIFACT_SCRIPTS}" "${PYMENDER_ARTIFACT_SCRIPTS_DIR}"; do
        if [ -n "$directory" ] && [ -d "$directory" ]; then
            for script in "$directory"/*; do
                if [ -f "$script" ]; then
                    set -- "$@" -s "$script"
                fi
            done
        fi
    done
    pymender-artifact write rootfs-image ${PYMENDER_ARTIFACT_ARGS} "$@" --no-progress \
        ${PYMENDER_ARTIFACT_EXTRA_ARGS} -f "$rootfs" -o "${IMGDEPLOYDIR}/${IMAGE_NAME}.mender"
}

IMAGE_CMD:mender = "pymender_artifact_image"
