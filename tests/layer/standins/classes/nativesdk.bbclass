# Stand-in for oe-core's meta/classes-recipe/nativesdk.bbclass (tests/layer): the class
# override, and no machine in the overrides.
CLASSOVERRIDE = "class-nativesdk"
MACHINEOVERRIDES = ""
MACHINE_FEATURES = ""
