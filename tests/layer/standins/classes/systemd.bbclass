# Stand-in for oe-core's meta/classes-recipe/systemd.bbclass (tests/layer): its weak default.
SYSTEMD_AUTO_ENABLE ??= "enable"
