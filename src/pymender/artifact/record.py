"""A plain base class for the read path's value objects: equality and a readable ``repr``.

The classes a reader builds (header, type-info, manifest, options) would be natural
dataclasses, but importing :mod:`dataclasses` pulls in :mod:`inspect` and with it much of the
standard library: about 15 ms of start-up for every ``pymender-artifact read``/``validate``
and every device check, a noticeable share of validating a small Artifact. These classes write
their ``__init__`` out instead and list their fields once, in ``_fields``, for ``==`` and
``repr``. Like a dataclass that is not frozen, they are mutable and unhashable.
"""

from __future__ import annotations

from typing import ClassVar


class Record:
    """Compare and print instances by the attributes named in ``_fields``."""

    _fields: ClassVar[tuple[str, ...]] = ()
    __hash__ = None  # type: ignore[assignment]  # mutable: not hashable, as a dataclass

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in self._fields)

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__name__}({fields})"
