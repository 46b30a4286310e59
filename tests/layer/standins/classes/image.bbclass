# Stand-in for oe-core's image.bbclass (tests/layer): it inherits IMAGE_CLASSES.
IMAGE_NAME = "${PN}-${MACHINE}.rootfs"
IMGDEPLOYDIR = "${WORKDIR}/deploy-${PN}-image-complete"
IMAGE_ROOTFS = "${WORKDIR}/rootfs"
inherit ${IMAGE_CLASSES}
