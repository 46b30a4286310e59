SUMMARY = "pymender's Update Modules: single-file, directory, script and deb"
DESCRIPTION = "Update Modules (Mender's protocol v3) that pymender ships, one package each, \
               installed in /usr/share/pymender/modules/v3 where pymender looks for them after \
               Mender's directory. They take the Artifacts of Mender's modules of the same names. \
               An image gets the ones PYMENDER_UPDATE_MODULES names."
HOMEPAGE = "https://pymender.example/"
BUGTRACKER = "https://pymender.example/issues"
CVE_PRODUCT = "pymender"
SECTION = "admin"
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/Apache-2.0;md5=89aea4e17d99a7cacdbeed46a0096b10"

inherit allarch pymender-setup

# The modules come from the pymender source tree, as the pymender recipe's package does
# (PYMENDER_SOURCE, PYMENDER_SRC_DIR: see pymender_0.1.0.bb).
PYMENDER_SOURCE ??= "local"
PYMENDER_SRC_DIR ??= "${@os.path.normpath(os.path.join(d.getVar('THISDIR'), '..', '..', '..'))}"
PYMENDER_GIT_URI ??= "git://git.pymender.example/pymender.git;protocol=https;branch=main"
PYMENDER_GIT_SRCREV ??= "9e747ca4bc408e2e856af6f4d02db61406f2f673"
FILESEXTRAPATHS:prepend := "${PYMENDER_SRC_DIR}:"

def pymender_module_uris(d):
    if d.getVar("PYMENDER_SOURCE") == "git":
        return "%s;destsuffix=%s" % (d.getVar("PYMENDER_GIT_URI"), d.getVar("BP"))
    return " ".join("file://modules/%s;subdir=%s" % (name, d.getVar("BP"))
                    for name in d.getVar("PYMENDER_KNOWN_UPDATE_MODULES").split())

SRC_URI = "${@pymender_module_uris(d)}"
SRCREV = "${PYMENDER_GIT_SRCREV}"
pymender_module_uris[vardepsexclude] = "PYMENDER_SRC_DIR"

python () {
    top = d.getVar("PYMENDER_SRC_DIR")
    if d.getVar("PYMENDER_SOURCE") == "local" and not os.path.isdir(os.path.join(top, "modules")):
        raise bb.parse.SkipRecipe("pymender's source tree is not at %s (PYMENDER_SRC_DIR): set "
                                  "PYMENDER_SRC_DIR to a pymender checkout, or PYMENDER_SOURCE = \"git\"" % top)
}

S = "${PYMENDER_UNPACKDIR}/${BP}"

do_configure[noexec] = "1"
do_compile[noexec] = "1"

do_install() {
    install -d ${D}${datadir}/pymender/modules/v3
    for module in ${PYMENDER_KNOWN_UPDATE_MODULES}; do
        install -m 0755 ${S}/modules/$module ${D}${datadir}/pymender/modules/v3/$module
    done
}

# One package per module (PYMENDER_KNOWN_UPDATE_MODULES); the recipe's own package is empty.
PACKAGES = "${PN}-deb ${PN}-directory ${PN}-script ${PN}-single-file"
FILES:${PN}-deb += "${datadir}/pymender/modules/v3/deb"
FILES:${PN}-directory += "${datadir}/pymender/modules/v3/directory"
FILES:${PN}-script += "${datadir}/pymender/modules/v3/script"
FILES:${PN}-single-file += "${datadir}/pymender/modules/v3/single-file"
RDEPENDS:${PN}-deb = "dpkg pymender"
RDEPENDS:${PN}-directory = "pymender"
RDEPENDS:${PN}-script = "pymender"
RDEPENDS:${PN}-single-file = "pymender"
