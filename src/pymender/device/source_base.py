"""What every update source is: a forward-only byte stream with its size and progress.

The shared base of the local sources (:mod:`pymender.device.sources`) and the HTTP(S) source
(:mod:`pymender.device.http_source`), and how a source's URL is shown in messages.
"""

from __future__ import annotations

import io
import urllib.parse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer


class Source(io.RawIOBase):
    """A forward-only binary stream of the update, with its total size and the bytes read so far.

    ``read(n)``, ``readinto(b)``, ``readall()`` and ``close()`` behave as for any raw stream;
    ``seekable()`` is false. ``size`` is ``None`` when the source cannot know it (stdin, a pipe,
    an HTTP answer without ``Content-Length``).
    """

    def __init__(self, name: str, size: int | None) -> None:
        super().__init__()
        #: What the user asked for, fit for messages (an URL without its query string).
        self.name = name
        #: Total size in bytes, or ``None`` when unknown.
        self.size = size
        #: Bytes delivered to the consumer so far.
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, buffer: WriteableBuffer) -> int:
        if self.closed:
            raise ValueError("I/O operation on a closed source")
        view = memoryview(buffer).cast("B")
        if not len(view):
            return 0
        count = self._readinto(view)
        self.bytes_read += count
        return count

    def _readinto(self, view: memoryview) -> int:
        """Fill the front of ``view`` with the next bytes; 0 only at the end of the source."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} {self.bytes_read}/{self.size}>"


def display_url(url: str) -> str:
    """The URL for messages: no user name or password, no query (it often carries a token)."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:
        return url.split("?", 1)[0]
    query = "?..." if parts.query else ""
    return f"{parts.scheme}://{host}{port}{parts.path}{query}"
