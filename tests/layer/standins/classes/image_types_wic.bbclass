# Stand-in for oe-core's meta/classes-recipe/image_types_wic.bbclass (tests/layer): the wic image
# type, and the tasks its image task depends on; board support layers add the tasks that deploy
# their IMAGE_BOOT_FILES to do_image_wic[depends].
IMAGE_CMD:wic = "wic create ${WKS_FULL_PATH} -o ${IMGDEPLOYDIR}"
do_image_wic[depends] += "wic-tools:do_populate_sysroot"
