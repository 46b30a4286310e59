# Stand-in for oe-core's meta/classes-global/base.bbclass, with the parts of utils.bbclass and
# logging.bbclass that the layer relies on (tests/layer): the search path of SRC_URI files
# (FILESPATH, FILESEXTRAPATHS, FILESOVERRIDES), the fetch task with the file checksums that
# make a changed local file rebuild a recipe, the standard task chain, and the shell log
# functions (bbnote, bbwarn, bbfatal).

def base_set_filespath(path, d):
    extra = (d.getVar("FILESEXTRAPATHS") or "").replace("__default:", "")
    if extra:
        path = extra.split(":") + path
    found = []
    for override in reversed((":" + (d.getVar("FILESOVERRIDES") or "")).split(":")):
        found += [os.path.join(p, override) for p in path if p]
    return ":".join(found)

FILESPATH = "${@base_set_filespath(["${FILE_DIRNAME}/${BP}", "${FILE_DIRNAME}/${BPN}", "${FILE_DIRNAME}/files"], d)}"

python base_do_fetch() {
    src_uri = (d.getVar("SRC_URI") or "").split()
    if src_uri:
        bb.fetch2.Fetch(src_uri, d).download()
}
do_fetch[file-checksums] = "${@bb.fetch.get_checksum_file_list(d)}"
do_fetch[network] = "1"
addtask fetch

python base_do_unpack() {
    src_uri = (d.getVar("SRC_URI") or "").split()
    if src_uri:
        bb.fetch2.Fetch(src_uri, d).unpack(d.getVar("UNPACKDIR") or d.getVar("WORKDIR"))
}
addtask unpack after do_fetch

base_do_configure() {
	:
}
addtask configure after do_unpack

base_do_compile() {
	:
}
addtask compile after do_configure

base_do_install() {
	:
}
addtask install after do_compile

base_do_build() {
	:
}
addtask build after do_install

EXPORT_FUNCTIONS do_fetch do_unpack do_configure do_compile do_install do_build

bbnote() {
	echo "NOTE: $*"
}

bbwarn() {
	echo "WARNING: $*"
}

bbfatal() {
	echo "ERROR: $*"
	exit 1
}

bbdebug() {
	:
}
