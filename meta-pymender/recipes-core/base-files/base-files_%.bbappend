# Empty unless pymender-full is inherited (it sets the "pymender-full" override).
require ${@'base-files-pymender.inc' if 'pymender-full' in (d.getVar('DISTROOVERRIDES') or '').split(':') else ''}
