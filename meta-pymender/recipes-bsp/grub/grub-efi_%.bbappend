# Empty unless pymender-full is inherited (it sets the "pymender-full" override).
require ${@'grub-efi-pymender.inc' if 'pymender-full' in (d.getVar('DISTROOVERRIDES') or '').split(':') else ''}
