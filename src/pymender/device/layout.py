"""Where the device keeps its data: pymender's own layout or Mender's, decided in this one place.

A device built for pymender keeps its data store in ``/var/lib/pymender`` (on the layer's images
a link into ``/data/pymender``). A device built for Mender, meta-mender's layout, keeps it in
Mender's data store ``/var/lib/mender`` (a link into ``/data/mender``): ``device_type``, the
Artifact's state scripts, ``bootstrap.mender``, Mender's own store ``mender-store``. pymender
works on either as it finds it: :func:`decide_layout` picks the data directory, and everything
kept there follows it (pymender's store ``store.json``, the lock, the Artifact's scripts in
``scripts/``, ``device_type`` unless ``DeviceTypeFile`` says otherwise, ``bootstrap.mender``, and
Mender's store to read the installed Artifact from).

The data directory is, the first that applies:

1. the one named on the command line (``-d``);
2. ``DataDir`` in the configuration;
3. pymender's own, ``/var/lib/pymender``, when it holds pymender's store or a ``device_type``;
4. Mender's data store (``MENDER_DATASTORE_DIR``, default ``/var/lib/mender``) when it holds a
   ``device_type``, Mender's store or a bootstrap Artifact: a Mender device;
5. pymender's own (nothing is set up yet; the missing ``device_type`` will say so).

Mender's other directories come from the environment as Mender's client reads them
(:class:`MenderPaths`): ``MENDER_CONF_DIR`` (``/etc/mender``: ``mender.conf`` and the rootfs state
scripts in ``scripts/``), ``MENDER_DATA_DIR`` (``/usr/share/mender``: Update Modules in
``modules/v3``, which pymender runs, looked up before its own ``/usr/share/pymender/modules/v3``),
``MENDER_DATASTORE_DIR`` (``/var/lib/mender``: the fallback configuration ``mender.conf`` and the
data store).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from collections.abc import Mapping

#: pymender's own data directory.
PYMENDER_DATA_DIR = Path("/var/lib/pymender")
#: pymender's own Update Modules, looked up after Mender's directory.
PYMENDER_MODULES_DIR = Path("/usr/share/pymender/modules/v3")
#: pymender's own configuration file.
PYMENDER_CONFIG_FILE = Path("/etc/pymender/pymender.conf")
#: What pymender writes into its data directory: finding it there means pymender runs the device.
OWN_MARKS = ("store.json", "device_type")
#: What Mender's client and meta-mender put into Mender's data store.
MENDER_MARKS = ("device_type", "mender-store", "bootstrap.mender")

#: The layouts :func:`decide_layout` reports.
PYMENDER = "pymender"
MENDER = "mender"
GIVEN = "given"


class MenderPaths(NamedTuple):
    """Mender's directories (``MENDER_CONF_DIR``, ``MENDER_DATA_DIR``, ``MENDER_DATASTORE_DIR``)."""

    conf_dir: Path = Path("/etc/mender")
    data_dir: Path = Path("/usr/share/mender")
    datastore: Path = Path("/var/lib/mender")

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> MenderPaths:
        """As Mender's client reads them: each variable, when set, replaces its default."""
        env = os.environ if environ is None else environ
        default = cls()
        return cls(Path(env.get("MENDER_CONF_DIR") or default.conf_dir),
                   Path(env.get("MENDER_DATA_DIR") or default.data_dir),
                   Path(env.get("MENDER_DATASTORE_DIR") or default.datastore))

    @property
    def main_config(self) -> Path:
        """Mender's configuration file, read on top of the fallback one."""
        return self.conf_dir / "mender.conf"

    @property
    def fallback_config(self) -> Path:
        """Mender's fallback configuration file (meta-mender puts ``RootfsPartA/B`` there)."""
        return self.datastore / "mender.conf"

    @property
    def rootfs_scripts(self) -> Path:
        """The state scripts of the root filesystem (``Idle``, ``Sync``, ``Download``)."""
        return self.conf_dir / "scripts"

    @property
    def modules(self) -> Path:
        """Where Mender looks for Update Modules."""
        return self.data_dir / "modules" / "v3"


class Layout(NamedTuple):
    """The data directory in use, which layout it is, and why it was chosen."""

    data_dir: Path
    #: :data:`PYMENDER`, :data:`MENDER` or :data:`GIVEN` (named by ``-d`` or ``DataDir``).
    kind: str
    why: str

    def describe(self) -> str:
        """One line for the log: ``data store /var/lib/mender (Mender's layout: ...)``."""
        name = {PYMENDER: "pymender's layout", MENDER: "Mender's layout", GIVEN: "as configured"}[self.kind]
        return f"data store {self.data_dir} ({name}: {self.why})"


def _found(directory: Path, marks: tuple[str, ...]) -> str | None:
    for name in marks:
        if (directory / name).exists():
            return name
    return None


def decide_layout(*, given: Path | None = None, configured: tuple[Path, Path] | None = None,
                  mender: MenderPaths | None = None, own: Path = PYMENDER_DATA_DIR) -> Layout:
    """The data directory (see the module docstring for the order).

    ``given``: the command line's ``-d``; ``configured``: ``DataDir`` and the file that set it;
    ``mender``: Mender's directories; ``own``: pymender's own data directory.
    """
    mender = mender or MenderPaths.from_environ()
    if given is not None:
        return Layout(given, GIVEN, "named on the command line")
    if configured is not None:
        return Layout(configured[0], GIVEN, f"DataDir in {configured[1]}")
    mark = _found(own, OWN_MARKS)
    if mark is not None:
        return Layout(own, PYMENDER, f"{own / mark} exists")
    mark = _found(mender.datastore, MENDER_MARKS)
    if mark is not None:
        return Layout(mender.datastore, MENDER, f"a Mender device: {mender.datastore / mark} exists")
    return Layout(own, PYMENDER, f"neither {own} nor {mender.datastore} holds a device_type yet")


__all__ = [
    "GIVEN",
    "MENDER",
    "PYMENDER",
    "PYMENDER_CONFIG_FILE",
    "PYMENDER_DATA_DIR",
    "PYMENDER_MODULES_DIR",
    "Layout",
    "MenderPaths",
    "decide_layout",
]
