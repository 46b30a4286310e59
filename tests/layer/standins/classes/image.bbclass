# Stand-in for oe-core's meta/classes-recipe/image.bbclass, with image-artifact-names.bbclass
# and the rootfs post-processing of rootfs-postcommands.bbclass (tests/layer). It does what the
# real class does with the variables meta-pymender sets or reads:
#   - IMAGE_CLASSES (with image_types) are inherited at the end of the recipe (inherit_defer);
#   - IMAGE_INSTALL is what do_rootfs installs; ROOTFS_POSTPROCESS_COMMAND runs after it;
#   - one task do_image_<type> per IMAGE_FSTYPES entry and its IMAGE_TYPEDEP, running
#     IMAGE_CMD:<type> with the "<type>" override (expanded, but for TMPDIR), after the tasks of
#     the types it depends on,
#     with set_image_size as prefunc; compressed types (ext4.gz) run the base type's command
#     and CONVERSION_CMD;
#   - get_rootfs_size: the filesystem size in KiB, from the rootfs's disk usage times
#     IMAGE_OVERHEAD_FACTOR or IMAGE_ROOTFS_SIZE, whichever is larger, plus
#     IMAGE_ROOTFS_EXTRA_SPACE (an arithmetic expression: recipes append " + 4096"), rounded up
#     to IMAGE_ROOTFS_ALIGNMENT, checked against IMAGE_ROOTFS_MAXSIZE;
#   - EXTRA_IMAGEDEPENDS: recipes built with the image (firmware QEMU needs, for example).

IMAGE_BASENAME ?= "${PN}"
IMAGE_NAME_SUFFIX ??= ".rootfs"
IMAGE_LINK_NAME ?= "${IMAGE_BASENAME}-${MACHINE}${IMAGE_NAME_SUFFIX}"
IMAGE_NAME ?= "${IMAGE_LINK_NAME}"
IMGDEPLOYDIR = "${WORKDIR}/deploy-${PN}-image-complete"
PACKAGE_INSTALL ?= "${IMAGE_INSTALL}"
RDEPENDS += "${PACKAGE_INSTALL}"
IMGCLASSES = "image_types image_types_wic ${IMAGE_CLASSES}"
inherit_defer ${IMGCLASSES}

def directory_size_kib(path):
    total = 0
    for root, dirs, files in os.walk(path):
        total += os.lstat(root).st_size
        for name in files:
            total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total / 1024

def get_rootfs_size(d):
    alignment = int(d.getVar("IMAGE_ROOTFS_ALIGNMENT"))
    factor = float(d.getVar("IMAGE_OVERHEAD_FACTOR"))
    requested = int(d.getVar("IMAGE_ROOTFS_SIZE"))
    extra = eval(d.getVar("IMAGE_ROOTFS_EXTRA_SPACE"))
    maxsize = d.getVar("IMAGE_ROOTFS_MAXSIZE")
    size = max(directory_size_kib(d.getVar("IMAGE_ROOTFS")) * factor, requested) + extra
    size = int(size) + (1 if size != int(size) else 0)
    size = -(-size // alignment) * alignment
    if maxsize and size > int(maxsize):
        bb.fatal("The rootfs size %d(K) exceeds IMAGE_ROOTFS_MAXSIZE: %d(K)" % (size, int(maxsize)))
    return size

python set_image_size() {
    d.setVar("ROOTFS_SIZE", str(get_rootfs_size(d)))
    d.setVarFlag("ROOTFS_SIZE", "export", "1")
}

ROOTFS_POSTPROCESS_COMMAND ?= ""
python do_rootfs() {
    for command in (d.getVar("ROOTFS_POSTPROCESS_COMMAND") or "").replace(";", " ").split():
        bb.build.exec_func(command, d)
}
do_rootfs[vardeps] += "IMAGE_INSTALL IMAGE_ROOTFS_SIZE IMAGE_ROOTFS_EXTRA_SPACE IMAGE_ROOTFS_MAXSIZE \
    IMAGE_ROOTFS_ALIGNMENT IMAGE_OVERHEAD_FACTOR IMAGE_FSTYPES ROOTFS_POSTPROCESS_COMMAND"
addtask rootfs

python () {
    for command in (d.getVar("ROOTFS_POSTPROCESS_COMMAND") or "").replace(";", " ").split():
        d.appendVarFlag("do_rootfs", "vardeps", " " + command)
}

do_image() {
	:
}
addtask image after do_rootfs

do_image_complete() {
	:
}
addtask image_complete after do_image before do_build

python () {
    conversions = (d.getVar("CONVERSIONTYPES") or "").split()
    def base_type(image_type):
        for conversion in conversions:
            if image_type.endswith("." + conversion):
                return base_type(image_type[:-len(conversion) - 1])
        return image_type

    wanted = (d.getVar("IMAGE_FSTYPES") or "").split()
    ordered = []
    def add(image_type):
        base = base_type(image_type)
        if base in ordered:
            return
        for dep in (d.getVar("IMAGE_TYPEDEP:" + base) or "").split():
            add(dep)
        ordered.append(base)
    for image_type in wanted:
        add(image_type)

    overrides = d.getVar("OVERRIDES", False)
    for base in ordered:
        local = bb.data.createCopy(d)
        local.setVar("OVERRIDES", "%s:%s" % (base, overrides))
        local.setVar("type", base)
        # As oe-core: the command is expanded into the task, but TMPDIR stays a reference, so the
        # task's signature does not depend on where the build directory is.
        local.delVar("TMPDIR")
        command = local.getVar("IMAGE_CMD")
        if not command:
            bb.fatal("No IMAGE_CMD defined for IMAGE_FSTYPES entry '%s'" % base)
        commands = ["\t" + command]
        for image_type in wanted:
            if image_type != base and base_type(image_type) == base:
                local.setVar("type", base)
                commands.append("\t" + local.getVar("CONVERSION_CMD:" + image_type.rsplit(".", 1)[1]))
        d.delVarFlag("IMAGE_CMD:" + base, "func")
        task = "do_image_" + base.replace("-", "_").replace(".", "_")
        d.setVar(task, "\n".join(commands))
        d.setVarFlag(task, "func", "1")
        d.appendVarFlag(task, "prefuncs", " set_image_size")
        d.appendVarFlag(task, "vardeps", " IMAGE_CMD:" + base)
        after = "do_image " + " ".join("do_image_" + base_type(dep).replace("-", "_").replace(".", "_")
                                       for dep in (d.getVar("IMAGE_TYPEDEP:" + base) or "").split())
        bb.build.addtask(task, "do_image_complete", after, d)

    deps = ""
    for dep in (d.getVar("EXTRA_IMAGEDEPENDS") or "").split():
        deps += " " + (dep if ":" in dep else dep + ":do_populate_sysroot")
    d.appendVarFlag("do_image_complete", "depends", deps)
}
