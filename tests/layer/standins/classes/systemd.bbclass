# Stand-in for oe-core's systemd.bbclass (tests/layer): its weak default only.
SYSTEMD_AUTO_ENABLE ??= "enable"
