# Stand-in for oe-core's meta/classes-recipe/qemuboot.bbclass (tests/layer): the runqemu
# settings the layer reads or sets.
QB_MEM ?= "-m 256"
QB_DEFAULT_FSTYPE ?= "ext4"
QB_DRIVE_TYPE ?= "/dev/sd"
