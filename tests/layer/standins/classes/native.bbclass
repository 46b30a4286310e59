# Stand-in for oe-core's native.bbclass (tests/layer): the class override only.
CLASSOVERRIDE = "class-native"
