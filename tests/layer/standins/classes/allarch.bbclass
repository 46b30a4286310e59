# Stand-in for oe-core's allarch.bbclass: packages of this recipe are the same for every
# architecture.
PACKAGE_ARCH = "all"
