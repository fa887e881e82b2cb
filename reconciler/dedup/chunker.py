"""Content-defined chunks of a stream, restarting at file boundaries.

The cut points come from pyfastcdc's FastCDC (C code that releases the GIL);
this module only feeds it. FastCDC decides where a chunk ends by looking at
most ``max_size`` bytes past the chunk's start and nothing before it, so a
chunk is cut as soon as ``max_size`` bytes from its start are known, and the
result is the same as if the whole stream had been given at once. Memory is
therefore bounded by about twice ``max_size`` plus what one ``feed`` gives,
whatever the stream's length.

A file boundary (``file_starts``) ends the pending piece as the end of the
stream would, if it holds at least ``min_size`` bytes: the next file's content
then starts a chunk, so an unchanged file gives the same chunks wherever it
sits in the stream. A shorter pending piece (a tar header and the tail of a
small file) is kept, so that boundaries never make chunks below the minimum.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from pyfastcdc import FastCDC

from reconciler.streams import CHUNK_SIZE

AVERAGE_SIZE = 1 << 20
"""FastCDC's target; its actual average is target + minimum, about 1.25 MiB.
About 1 MiB keeps the index at 10 million entries for 10 TB while a changed
byte rewrites about a megabyte."""
MIN_SIZE = 256 << 10
"""Below this FastCDC never cuts: keeps the per-chunk cost (an index entry, a
record's nonce and tag) under 0.03 % of the data."""
MAX_SIZE = 4 << 20
"""A chunk never exceeds this (so a reader never needs more memory for one),
and data without cut points (zeros) is cut here."""


@dataclass(frozen=True)
class ChunkParams:
    """FastCDC's sizes; the defaults are the format's, tests use smaller ones."""

    average: int = AVERAGE_SIZE
    minimum: int = MIN_SIZE
    maximum: int = MAX_SIZE


@dataclass(frozen=True)
class Chunk:
    """One chunk: where it starts in the stream and its bytes."""

    offset: int
    data: bytes


class Chunker:
    """Cuts one stream into chunks; feed it bytes in order, then call ``finish``.

    Not thread-safe. ``seed`` is the chunker seed derived from the index key
    (``keys.DerivedKeys.chunker_seed``)."""

    def __init__(self, seed: int, params: ChunkParams = ChunkParams()) -> None:
        self._cdc = FastCDC(
            params.average, min_size=params.minimum, max_size=params.maximum, seed=seed
        )
        self._min = params.minimum
        self._max = params.maximum
        self._pending = bytearray()
        self._start = 0  # stream offset of self._pending[0]

    def feed(self, data: bytes | memoryview) -> list[Chunk]:
        """Add the next bytes of the stream; return the chunks they complete, in order."""
        out: list[Chunk] = []
        view = memoryview(data)
        for at in range(0, len(view), self._max):
            self._pending += view[at : at + self._max]
            if len(self._pending) >= 2 * self._max:
                self._cut(out, final=False)
        return out

    def file_starts(self) -> list[Chunk]:
        """Say that a file's content starts at the current position.

        Returns the chunks that ends (the pending piece cut as at the end of the
        stream) if it holds at least the minimum size; otherwise nothing, and
        the piece goes on into the file's content."""
        if len(self._pending) < self._min:
            return []
        out: list[Chunk] = []
        self._cut(out, final=True)
        return out

    def finish(self) -> list[Chunk]:
        """End the stream; return the last chunks. The chunker can then start a new stream."""
        out: list[Chunk] = []
        self._cut(out, final=True)
        self._start = 0
        return out

    def _cut(self, out: list[Chunk], *, final: bool) -> None:
        pending = self._pending
        at = 0
        with memoryview(pending) as view:
            # Only a piece with max_size bytes ahead is cut exactly as the whole
            # stream would cut it; the rest waits for more data or the end.
            while len(pending) - at >= self._max or (final and at < len(pending)):
                length = self._first_cut(view, at)
                out.append(Chunk(self._start + at, bytes(view[at : at + length])))
                at += length
        del pending[:at]
        self._start += at

    def _first_cut(self, view: memoryview, at: int) -> int:
        with view[at : at + self._max] as window:
            cuts = self._cdc.cut_buf(window)
            length = next(cuts).length
            del cuts  # it holds a view of the window, which must be released
        return length


def chunk_stream(
    reader: BinaryIO, seed: int, params: ChunkParams = ChunkParams()
) -> Iterator[Chunk]:
    """Yield the chunks of everything ``reader`` holds (no file boundaries)."""
    chunker = Chunker(seed, params)
    while block := reader.read(CHUNK_SIZE):
        yield from chunker.feed(block)
    yield from chunker.finish()
