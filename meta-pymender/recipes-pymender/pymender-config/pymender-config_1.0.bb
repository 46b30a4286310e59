SUMMARY = "pymender's configuration and device type for this machine"
DESCRIPTION = "/etc/pymender/pymender.conf (the rootfs partitions, the boot loader, the \
               Artifact verification key), the key itself, and the device type on the data \
               partition, from the PYMENDER_* variables. Machine-specific, so kept out of the \
               pymender package, which is the same for every machine of one architecture."
HOMEPAGE = "https://pymender.example/"
BUGTRACKER = "https://pymender.example/issues"
CVE_PRODUCT = "pymender"
SECTION = "admin"
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/Apache-2.0;md5=89aea4e17d99a7cacdbeed46a0096b10"

SRC_URI = "file://pymender.conf.in;subdir=${BP}"

inherit pymender-setup

S = "${PYMENDER_UNPACKDIR}/${BP}"
PACKAGE_ARCH = "${MACHINE_ARCH}"

do_configure[noexec] = "1"

# The configuration and the device type, from the PYMENDER_* variables.
python do_compile() {
    import json
    pymender_render(d, os.path.join(d.getVar("S"), "pymender.conf.in"),
                    os.path.join(d.getVar("B"), "pymender.conf.rendered"))
    with open(os.path.join(d.getVar("B"), "pymender.conf.rendered"), encoding="utf-8") as rendered:
        config = json.load(rendered)
    if d.getVar("PYMENDER_ARTIFACT_VERIFY_KEY"):
        config["ArtifactVerifyKey"] = os.path.join(d.getVar("sysconfdir"), "pymender",
                                                   "artifact-verify-key.pem")
    # Managed mode: the server, the organization's token, the server's CA.
    if d.getVar("PYMENDER_SERVER_URL"):
        config["ServerURL"] = d.getVar("PYMENDER_SERVER_URL")
    if d.getVar("PYMENDER_TENANT_TOKEN"):
        config["TenantToken"] = d.getVar("PYMENDER_TENANT_TOKEN")
    if d.getVar("PYMENDER_SERVER_CERTIFICATE"):
        config["ServerCertificate"] = os.path.join(d.getVar("sysconfdir"), "pymender", "server.crt")
    with open(os.path.join(d.getVar("B"), "pymender.conf"), "w", encoding="utf-8") as conf:
        conf.write(json.dumps(config, indent=2) + "\n")
    with open(os.path.join(d.getVar("B"), "device_type"), "w", encoding="utf-8") as device_type:
        device_type.write("device_type=%s\n" % d.getVar("PYMENDER_DEVICE_TYPE"))
}
do_compile[vardeps] += "PYMENDER_ROOTFS_PART_A PYMENDER_ROOTFS_PART_B PYMENDER_BOOTLOADER \
    PYMENDER_ARTIFACT_VERIFY_KEY PYMENDER_DEVICE_TYPE PYMENDER_SERVER_URL PYMENDER_TENANT_TOKEN \
    PYMENDER_SERVER_CERTIFICATE"

do_install[file-checksums] += "${@'%s:True' % d.getVar('PYMENDER_ARTIFACT_VERIFY_KEY') if d.getVar('PYMENDER_ARTIFACT_VERIFY_KEY') else ''}"
do_install[file-checksums] += "${@'%s:True' % d.getVar('PYMENDER_SERVER_CERTIFICATE') if d.getVar('PYMENDER_SERVER_CERTIFICATE') else ''}"
do_install() {
    install -d ${D}${sysconfdir}/pymender ${D}/data/pymender
    install -m 0644 ${B}/pymender.conf ${D}${sysconfdir}/pymender/pymender.conf
    if [ -n "${PYMENDER_ARTIFACT_VERIFY_KEY}" ]; then
        install -m 0644 "${PYMENDER_ARTIFACT_VERIFY_KEY}" ${D}${sysconfdir}/pymender/artifact-verify-key.pem
    fi
    if [ -n "${PYMENDER_SERVER_CERTIFICATE}" ]; then
        install -m 0644 "${PYMENDER_SERVER_CERTIFICATE}" ${D}${sysconfdir}/pymender/server.crt
    fi
    # On the data partition, which survives rootfs updates (pymender-full moves /data's
    # content there when it makes the image).
    install -m 0644 ${B}/device_type ${D}/data/pymender/device_type
}

FILES:${PN} += "/data/pymender"
CONFFILES:${PN} = "${sysconfdir}/pymender/pymender.conf"

# Verifying signatures needs cryptography on the device.
RDEPENDS:${PN} = "${@'python3-cryptography' if d.getVar('PYMENDER_ARTIFACT_VERIFY_KEY') else ''} pymender"
