# Stand-in for oe-core's grub-efi recipe (tests/layer): its default built-in modules.
LICENSE = "GPL-3.0-only"
GRUB_BUILDIN ?= "boot linux ext2 fat serial part_msdos part_gpt normal \
                 efi_gop iso9660 configfile search loadenv test"
