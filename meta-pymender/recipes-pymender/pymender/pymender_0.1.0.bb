SUMMARY = "pymender: standalone A/B system updater that installs Mender Artifacts"
DESCRIPTION = "pymender installs Mender Artifacts (v3) into the inactive root filesystem \
               partition, switches the bootloader environment, commits or rolls back after \
               the reboot. The native and nativesdk variants provide pymender-artifact and \
               pymender-image, which the layer's image types run."
HOMEPAGE = "https://pymender.example/"
BUGTRACKER = "https://pymender.example/issues"
CVE_PRODUCT = "pymender"
SECTION = "admin"
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://LICENSE;md5=83cc2b9f844f7cd7fe31ac2e7e552bde"

# The layer lives inside pymender's repository: the Python package is fetched from that
# checkout (PYMENDER_SRC_DIR, set in conf/layer.conf), so the layer builds what it is shipped
# with and needs no network. Each SRC_URI file is checksummed: an edit rebuilds the recipe.
# Everything lands in ${S} (= ${BP} in the unpack directory on scarthgap and wrynose alike).
# PYMENDER_SRC_DIR: the repository holding this layer, unless set to another source tree.
PYMENDER_SRC_DIR ??= "${@os.path.normpath(os.path.join(d.getVar('THISDIR'), '..', '..', '..'))}"
FILESEXTRAPATHS:prepend := "${PYMENDER_SRC_DIR}:"
SRC_URI = "file://pyproject.toml;subdir=${BP} \
           file://README.md;subdir=${BP} \
           file://LICENSE;subdir=${BP} \
           file://src/pymender;subdir=${BP} \
           file://pymender.service;subdir=${BP}/layer-files \
           file://pymender.conf.in;subdir=${BP}/layer-files \
           file://pymender-tmpfiles.conf;subdir=${BP}/layer-files \
           "

inherit python_setuptools_build_meta systemd pymender-setup

# verify: signature checks (on by itself when PYMENDER_ARTIFACT_VERIFY_KEY is set)
# zstd: zstd-compressed Artifacts; python3-zstandard comes from meta-python
PACKAGECONFIG ??= "${@'verify' if d.getVar('PYMENDER_ARTIFACT_VERIFY_KEY') else ''}"
PACKAGECONFIG[verify] = ",,,python3-cryptography"
PACKAGECONFIG[zstd] = ",,,python3-zstandard"

FILES:${PN} += "${systemd_system_unitdir}/pymender.service \
                ${nonarch_libdir}/tmpfiles.d/pymender.conf \
                ${sysconfdir}/pymender \
                ${localstatedir}/lib/pymender \
                /data/pymender \
                "
CONFFILES:${PN} = "${sysconfdir}/pymender/pymender.conf"

# Only the standard library modules pymender imports (checked by the layer tests), plus
# cryptography when Artifacts are verified and zstandard for zstd Artifacts.
RDEPENDS:${PN} = "python3-asyncio python3-compression python3-core python3-crypt \
                  python3-ctypes python3-datetime python3-fcntl python3-io python3-json \
                  python3-logging python3-netclient python3-threading"

# Standalone mode: the unit is installed disabled. SYSTEMD_AUTO_ENABLE:pn-pymender = "enable"
# turns it on.
SYSTEMD_SERVICE:${PN} = "pymender.service"
SYSTEMD_AUTO_ENABLE ?= "disable"

PYMENDER_FILES = "${S}/layer-files"
PYMENDER_GENERATED = "${WORKDIR}/pymender-generated"

# The configuration and the device type, from the PYMENDER_* variables (target only).
python do_pymender_generate() {
    import json
    if bb.data.inherits_class("native", d) or bb.data.inherits_class("nativesdk", d):
        return
    out = d.getVar("PYMENDER_GENERATED")
    pymender_render(d, os.path.join(d.getVar("PYMENDER_FILES"), "pymender.conf.in"),
                    os.path.join(out, "pymender.conf.rendered"))
    with open(os.path.join(out, "pymender.conf.rendered"), encoding="utf-8") as rendered:
        config = json.load(rendered)
    if d.getVar("PYMENDER_ARTIFACT_VERIFY_KEY"):
        config["ArtifactVerifyKey"] = os.path.join(d.getVar("sysconfdir"), "pymender",
                                                   "artifact-verify-key.pem")
    with open(os.path.join(out, "pymender.conf"), "w", encoding="utf-8") as conf:
        conf.write(json.dumps(config, indent=2) + "\n")
    with open(os.path.join(out, "device_type"), "w", encoding="utf-8") as device_type:
        device_type.write("device_type=%s\n" % d.getVar("PYMENDER_DEVICE_TYPE"))
}
do_pymender_generate[cleandirs] = "${PYMENDER_GENERATED}"
do_pymender_generate[vardeps] += "PYMENDER_ROOTFS_PART_A PYMENDER_ROOTFS_PART_B PYMENDER_BOOTLOADER"
addtask pymender_generate after do_unpack before do_install

do_install[file-checksums] += "${@'%s:True' % d.getVar('PYMENDER_ARTIFACT_VERIFY_KEY') if d.getVar('PYMENDER_ARTIFACT_VERIFY_KEY') else ''}"

do_install:append:class-target() {
    install -d ${D}${systemd_system_unitdir} ${D}${nonarch_libdir}/tmpfiles.d ${D}${sysconfdir}/pymender
    install -m 0644 ${PYMENDER_FILES}/pymender.service ${D}${systemd_system_unitdir}/pymender.service
    install -m 0644 ${PYMENDER_FILES}/pymender-tmpfiles.conf ${D}${nonarch_libdir}/tmpfiles.d/pymender.conf
    install -m 0644 ${PYMENDER_GENERATED}/pymender.conf ${D}${sysconfdir}/pymender/pymender.conf
    if [ -n "${PYMENDER_ARTIFACT_VERIFY_KEY}" ]; then
        install -m 0644 "${PYMENDER_ARTIFACT_VERIFY_KEY}" ${D}${sysconfdir}/pymender/artifact-verify-key.pem
    fi
    # State and device type live on /data, which survives rootfs updates.
    install -d ${D}/data/pymender ${D}${localstatedir}/lib
    install -m 0644 ${PYMENDER_GENERATED}/device_type ${D}/data/pymender/device_type
    ln -sf /data/pymender ${D}${localstatedir}/lib/pymender
}

BBCLASSEXTEND = "native nativesdk"
