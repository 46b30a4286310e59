# Stand-in for oe-core's base.bbclass (tests/layer): empty.
