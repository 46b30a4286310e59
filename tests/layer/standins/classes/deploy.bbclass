# Stand-in for oe-core's deploy.bbclass (tests/layer): empty.
