# Stand-in for oe-core's meta/recipes-bsp/grub/grub-efi_2.12.bb (tests/layer): its default
# built-in modules and the EFI binary it deploys (grub-efi-<EFI_BOOT_IMAGE>).
LICENSE = "GPL-3.0-only"
require conf/image-uefi.conf
inherit deploy
GRUB_BUILDIN ?= "boot linux ext2 fat serial part_msdos part_gpt normal \
                 efi_gop iso9660 configfile search loadenv test"
do_deploy() {
	install -m 644 ${B}/grub-efi-${EFI_BOOT_IMAGE} ${DEPLOYDIR}
}
addtask deploy after do_install before do_build
