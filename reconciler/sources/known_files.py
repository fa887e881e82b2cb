"""What a ``files`` source's reader may skip: large files whose content is known.

Format 2 keeps, on the backup host, the chunks of each large file it read
(the file cache, in ``dedup``). Sources sit below that layer, so the tar
writer sees the cache only through this protocol: before reading a large
file it asks ``known``; on True it writes the file's header and padding as
always but, in place of the content, calls ``skip`` with its size. The
stream's consumer then lists the cached chunks, so the stored stream (and
any restore of it) is byte for byte what reading the file would have given.

Runs of small entries go the same way. The tree walker groups the stream's
small entries into runs: a folder's header and the small files and links
after it, up to the next folder or large file. It says where each run starts
(``run_starts``) and ends (``run_ends``, with a description of its entries);
when it stat-ed the run's entries ahead (``looks_up_runs``) it first asks
``known_run`` with that description, and on a known run calls ``skip_run``
with the run's length instead of opening, reading and writing its entries.
A description (``tar_writer.describe``) holds everything the entries' tar
bytes are made from, so equal descriptions mean byte-identical runs.
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

    @property
    def looks_up_runs(self) -> bool:
        """Whether ``known_run`` may answer: if not, the walker need not stat ahead."""
        ...

    def run_starts(self) -> None:
        """A run of small entries starts with the next byte (every byte before it written)."""
        ...

    def known_run(self, entries: bytes, /) -> int | None:
        """The length in bytes of the run whose entries ``entries`` describes, when
        those bytes are known (the run just started is then ``skip_run``-ped), else None."""
        ...

    def skip_run(self, size: int, /) -> None:
        """Stands for the run just started and said known: its ``size`` bytes."""
        ...

    def run_ends(self, entries: bytes, /) -> None:
        """The run written since ``run_starts`` ended with the last byte written;
        ``entries`` describes its entries as written."""
        ...
