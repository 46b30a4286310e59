# A product's recipe that ships state scripts with meta-pymender's pymender-state-scripts class
# (tests/layer), written as the class's comment tells users to.
SUMMARY = "Example state scripts"
LICENSE = "MIT"
SRC_URI = "file://ArtifactInstall_Leave_50_check-app file://Idle_Enter_10_led file://Download_Enter_00"
inherit pymender-state-scripts
S = "${@d.getVar('UNPACKDIR') or d.getVar('WORKDIR')}"
do_compile() {
	cp ${S}/ArtifactInstall_Leave_50_check-app ${S}/Idle_Enter_10_led ${PYMENDER_STATE_SCRIPTS_DIR}/
	cp ${S}/Download_Enter_00 ${S}/pymender-state-scripts/
}
