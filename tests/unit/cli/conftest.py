"""The disk image inputs (tests/image_inputs.py) as fixtures here."""

from image_inputs import boot_dir, data_dir, rootfs

__all__ = ["boot_dir", "data_dir", "rootfs"]
