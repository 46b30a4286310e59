# Stand-in for oe-core's nativesdk.bbclass (tests/layer): the class override only.
CLASSOVERRIDE = "class-nativesdk"
