# Empty unless pymender-full is inherited (it sets the "pymender-full" override) and the machine
# boots with U-Boot (PYMENDER_BOOTLOADER = "uboot").
require ${@'u-boot-pymender.inc' if 'pymender-full' in (d.getVar('DISTROOVERRIDES') or '').split(':') and d.getVar('PYMENDER_BOOTLOADER') == 'uboot' else ''}
