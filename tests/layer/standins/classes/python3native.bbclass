# Stand-in for oe-core's python3native.bbclass (tests/layer): empty.
