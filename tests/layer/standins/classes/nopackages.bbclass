# Stand-in for oe-core's nopackages.bbclass (tests/layer): empty.
