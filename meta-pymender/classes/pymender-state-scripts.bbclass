# pymender-state-scripts.bbclass: a recipe that ships state scripts, as meta-mender's
# mender-state-scripts class lets recipes do.
#
# Usage, in a recipe:
#     inherit pymender-state-scripts
#     SRC_URI += "file://ArtifactInstall_Leave_50_check-app file://Idle_Enter_10_led"
#     do_compile() {
#         cp ${S}/ArtifactInstall_Leave_50_check-app ${S}/Idle_Enter_10_led ${PYMENDER_STATE_SCRIPTS_DIR}/
#     }
# Put the scripts into ${PYMENDER_STATE_SCRIPTS_DIR} (or ${S}/pymender-state-scripts); both
# exist before do_configure. Each script's name is <State>_<Action>_<NN>[_<description>]
# (docs/device-scripts-and-sources.md):
#   - Artifact* scripts go into the Artifact (image type "mender") of every image that installs
#     this recipe's package, not into the rootfs;
#   - Idle, Sync and Download scripts are installed into the rootfs, in /etc/mender/scripts,
#     where pymender runs them; the image gets the directory's version file.
# Any other name stops the build. The package is empty of scripts for images that pymender does
# not apply to only in the sense that Artifact scripts then stay unused in /usr/share.

inherit pymender-setup

PYMENDER_STATE_SCRIPTS_DIR = "${B}/pymender-state-scripts"
PYMENDER_STATE_SCRIPTS ?= "${S}/pymender-state-scripts ${PYMENDER_STATE_SCRIPTS_DIR}"

do_pymender_state_script_dirs() {
    mkdir -p ${S}/pymender-state-scripts ${PYMENDER_STATE_SCRIPTS_DIR}
}
addtask pymender_state_script_dirs after do_unpack before do_configure

do_install:append() {
    for entry in ${PYMENDER_STATE_SCRIPTS}; do
        if [ ! -d "$entry" ]; then
            bbfatal "$entry (PYMENDER_STATE_SCRIPTS) is not a directory"
        fi
    done
    for script in $(find ${PYMENDER_STATE_SCRIPTS} -type f | sort -u); do
        name=$(basename "$script")
        case "$name" in
            Artifact*_Enter_[0-9][0-9]*|Artifact*_Leave_[0-9][0-9]*|Artifact*_Error_[0-9][0-9]*)
                install -d ${D}${PYMENDER_STATE_SCRIPTS_STAGING}
                install -m 0755 "$script" ${D}${PYMENDER_STATE_SCRIPTS_STAGING}/
                ;;
            Idle_*_[0-9][0-9]*|Sync_*_[0-9][0-9]*|Download_*_[0-9][0-9]*)
                install -d ${D}${PYMENDER_ROOTFS_SCRIPTS_DIR}
                install -m 0755 "$script" ${D}${PYMENDER_ROOTFS_SCRIPTS_DIR}/
                ;;
            *)
                bbfatal "$name is not a state script name: <State>_<Enter|Leave|Error>_<NN>[_<description>]"
                ;;
        esac
    done
}

FILES:${PN} += "${PYMENDER_STATE_SCRIPTS_STAGING} ${PYMENDER_ROOTFS_SCRIPTS_DIR}"
