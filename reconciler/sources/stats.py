"""What a source function read or wrote, and the stream types it works with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from reconciler.streams import CHUNK_SIZE as CHUNK_SIZE
from reconciler.streams import ByteSink as ByteSink


@dataclass(frozen=True)
class SourceStats:
    """How much a source function handled.

    ``items`` counts files, folders and links for a tree (one for a database or
    a command) and ``content_bytes`` the bytes of content read or written.
    """

    items: int
    content_bytes: int


class ByteSource(Protocol):
    """Where a restore stream comes from: anything with ``read(n)``.

    ``read`` returns at most ``size`` bytes, and ``b""`` only at the end.
    """

    def read(self, size: int, /) -> bytes: ...
