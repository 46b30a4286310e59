SUMMARY = "pymender: standalone A/B system updater that installs Mender Artifacts"
SUMMARY:${PN}-mender-update = "pymender as mender-update: Mender 5.x's command line"
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

# Where the Python package comes from (PYMENDER_SOURCE):
#   "local" (the default): the pymender source tree PYMENDER_SRC_DIR, by default the repository
#     that holds this layer, so the layer builds the updater it is shipped with and needs no
#     network. Each file is fetched with file:// (compiled __pycache__ files left out), so an
#     edit rebuilds the recipe and a test run does not. When the tree is not there (the layer
#     was copied on its own), the recipe is skipped with a message that says what to set; the
#     rest of the build parses as before.
#   "git": the pinned release PYMENDER_GIT_URI at PYMENDER_GIT_SRCREV.
# The unit, the tmpfiles snippet and the configuration come from this layer in both cases.
PYMENDER_SOURCE ??= "local"
PYMENDER_SRC_DIR ??= "${@os.path.normpath(os.path.join(d.getVar('THISDIR'), '..', '..', '..'))}"
# The project's public repository and the commit of the release this layer version was made
# with; change both together.
PYMENDER_GIT_URI ??= "git://git.pymender.example/pymender.git;protocol=https;branch=main"
PYMENDER_GIT_SRCREV ??= "9e747ca4bc408e2e856af6f4d02db61406f2f673"

FILESEXTRAPATHS:prepend := "${PYMENDER_SRC_DIR}:"
SRC_URI = "${@pymender_source_uris(d)} \
           file://pymender.service;subdir=${BP}/layer-files \
           file://pymender-tmpfiles.conf;subdir=${BP}/layer-files \
           "
SRCREV = "${PYMENDER_GIT_SRCREV}"

def pymender_source_uris(d):
    """The SRC_URI entries of the Python package, for PYMENDER_SOURCE."""
    if d.getVar("PYMENDER_SOURCE") == "git":
        return "%s;destsuffix=%s" % (d.getVar("PYMENDER_GIT_URI"), d.getVar("BP"))
    top = d.getVar("PYMENDER_SRC_DIR")
    if not os.path.isfile(os.path.join(top, "pyproject.toml")):
        return ""
    names = ["pyproject.toml", "README.md", "LICENSE"]
    for root, dirs, files in os.walk(os.path.join(top, "src", "pymender")):
        dirs[:] = sorted(name for name in dirs if name != "__pycache__")
        names += [os.path.relpath(os.path.join(root, name), top) for name in sorted(files)
                  if not name.endswith((".pyc", ".pyo"))]
    return " ".join("file://%s;subdir=%s" % (name, d.getVar("BP")) for name in names)

# The checkout's place is not part of the signature (its files' checksums are): two checkouts
# of the same sources build the same pymender.
pymender_source_uris[vardepsexclude] = "PYMENDER_SRC_DIR"

python () {
    source = d.getVar("PYMENDER_SOURCE")
    if source not in ("local", "git"):
        bb.fatal("PYMENDER_SOURCE must be \"local\" or \"git\", not \"%s\"" % source)
    top = d.getVar("PYMENDER_SRC_DIR")
    if source == "local" and not os.path.isfile(os.path.join(top, "pyproject.toml")):
        raise bb.parse.SkipRecipe("pymender's source tree is not at %s (PYMENDER_SRC_DIR): set "
                                  "PYMENDER_SRC_DIR to a pymender checkout, or PYMENDER_SOURCE = \"git\" "
                                  "to fetch the pinned release" % top)
}

S = "${PYMENDER_UNPACKDIR}/${BP}"

inherit python_setuptools_build_meta systemd pymender-setup

# verify: signature checks (pymender-config turns it on when PYMENDER_ARTIFACT_VERIFY_KEY is set)
# zstd: zstd-compressed Artifacts; python3-zstandard comes from meta-python
PACKAGECONFIG ??= ""
PACKAGECONFIG[verify] = ",,,python3-cryptography"
PACKAGECONFIG[zstd] = ",,,python3-zstandard"

# mender-update (Mender 5.x's command line) in a package of its own: it takes the name of
# Mender's command, so an image gets it only when asked (PYMENDER_MENDER_UPDATE, or the package
# in IMAGE_INSTALL) and never next to Mender's own mender-update package.
PACKAGES =+ "${PN}-mender-update"
FILES:${PN}-mender-update += "${bindir}/mender-update"
FILES:${PN} += "${systemd_system_unitdir}/pymender.service \
                ${nonarch_libdir}/tmpfiles.d/pymender.conf \
                ${localstatedir}/lib/pymender \
                "

# Only the standard library modules pymender imports (checked by the layer tests), plus
# cryptography when Artifacts are verified and zstandard for zstd Artifacts.
RDEPENDS:${PN} = "python3-asyncio python3-compression python3-core python3-crypt \
                  python3-ctypes python3-datetime python3-fcntl python3-io python3-json \
                  python3-logging python3-netclient python3-threading"
RDEPENDS:${PN}-mender-update = "${PN}"
RCONFLICTS:${PN}-mender-update = "mender-update"

# Standalone mode: the unit is installed disabled. SYSTEMD_AUTO_ENABLE:pn-pymender = "enable"
# turns it on.
SYSTEMD_SERVICE:${PN} = "pymender.service"
SYSTEMD_AUTO_ENABLE ?= "disable"

PYMENDER_FILES = "${S}/layer-files"

# The machine's configuration and device type are in pymender-config (MACHINE_ARCH); this
# package is the same for every machine of one architecture.
do_install:append:class-target() {
    install -d ${D}${systemd_system_unitdir} ${D}${nonarch_libdir}/tmpfiles.d ${D}${localstatedir}/lib
    install -m 0644 ${PYMENDER_FILES}/pymender.service ${D}${systemd_system_unitdir}/pymender.service
    install -m 0644 ${PYMENDER_FILES}/pymender-tmpfiles.conf ${D}${nonarch_libdir}/tmpfiles.d/pymender.conf
    # State and device type live on /data, which survives rootfs updates.
    ln -sf /data/pymender ${D}${localstatedir}/lib/pymender
}

BBCLASSEXTEND = "native nativesdk"
