# Stand-in for oe-core's meta/classes-recipe/native.bbclass (tests/layer): a native recipe
# builds for the build host, so it drops the machine from its overrides and architectures.
CLASSOVERRIDE = "class-native"
PACKAGE_ARCH = "${BUILD_ARCH}"
TARGET_ARCH = "${BUILD_ARCH}"
MACHINEOVERRIDES = ""
MACHINE_FEATURES = ""
