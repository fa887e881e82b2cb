"""What a ``files`` source's reader may skip: large files whose content is known.

Format 2 keeps, on the backup host, the chunks of each large file it read
(the file cache, in ``dedup``). Sources sit below that layer, so the tar
writer sees the cache only through this protocol: before reading a large
file it asks ``known``; on True it writes the file's header and padding as
always but, in place of the content, calls ``skip`` with its size. The
stream's consumer then lists the cached chunks, so the stored stream (and
any restore of it) is byte for byte what reading the file would have given.
"""

from __future__ import annotations

import os
from typing import Protocol


class KnownFiles(Protocol):
    """The consumer of a ``files`` source's tar stream, when it can skip content."""

    @property
    def min_size(self) -> int:
        """Files smaller than this are never asked about (they are always read)."""
        ...

    def known(self, name: bytes, st: os.stat_result, /) -> bool:
        """True when the content of the regular file ``name`` (its archive name),
        whose ``fstat`` is ``st``, is known: it is then skipped, not read."""
        ...

    def skip(self, size: int, /) -> None:
        """Stands for the content just said known: every byte of the stream
        before it has been written, and the stream's next ``size`` bytes are
        that content."""
        ...
