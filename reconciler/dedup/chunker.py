"""Content-defined chunks of a stream, cut at the ends of large files.

The cut points come from pyfastcdc's FastCDC (C code that releases the GIL);
this module only feeds it. FastCDC decides where a chunk ends by looking at
most ``max_size`` bytes past the chunk's start and nothing before it, so a
chunk is cut as soon as ``max_size`` bytes from its start are known, and the
result is the same as if the whole stream had been given at once. Memory is
therefore bounded by about three times ``max_size`` (plus what one ``feed``
gives), whatever the stream's length.

A stream without file boundaries (a database snapshot, a command's output)
is cut with one set of sizes (``ChunkParams()``, about 1 MiB). A tar stream
has two: the content of a large file (``LARGE_FILE`` bytes or more) is cut
with the large sizes and is exactly a run of whole chunks, because
``file_starts`` and ``file_ends`` end the pending piece as the end of a
stream would, whatever its size; so an unchanged large file gives the same
chunks wherever it sits, and the file cache can hold them. Everything
between large files (headers, small files, padding) is cut with the smaller
``between_files`` sizes, so that rewriting a few small files among thousands
changes few bytes of chunks (see docs/design.md for the measurement).
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
LARGE_FILE = MIN_SIZE
"""A regular file with at least this much content is a run of whole chunks of
its own; a smaller one would be a single chunk below the minimum, so it goes
with its neighbours into the chunks between large files."""


@dataclass(frozen=True)
class ChunkParams:
    """FastCDC's sizes; the defaults are the format's, tests use smaller ones."""

    average: int = AVERAGE_SIZE
    minimum: int = MIN_SIZE
    maximum: int = MAX_SIZE


SMALL_RUN_PARAMS = ChunkParams(average=64 << 10, minimum=16 << 10, maximum=256 << 10)
"""The sizes between large files (tar headers, small files). Measured on the
bench's set (bench/dedup_small_runs.py, docs/design.md): rewriting 200 of
20,000 small files then stores a few small chunks per file instead of most
of the small files' 1 MiB chunks, while the chunks still hold several small
files each, so zstd keeps most of its gain across files."""


@dataclass(frozen=True)
class Chunk:
    """One chunk: where it starts in the stream and its bytes."""

    offset: int
    data: bytes


class _Cutter:
    """FastCDC with one set of sizes."""

    def __init__(self, seed: int, params: ChunkParams) -> None:
        self.cdc = FastCDC(
            params.average, min_size=params.minimum, max_size=params.maximum, seed=seed
        )
        self.max = params.maximum

    def first_cut(self, view: memoryview, at: int) -> int:
        """The length of the chunk starting at ``view[at]``."""
        with view[at : at + self.max] as window:
            cuts = self.cdc.cut_buf(window)
            length = next(cuts).length
            del cuts  # it holds a view of the window, which must be released
        return length


class Chunker:
    """Cuts one stream into chunks; feed it bytes in order, then call ``finish``.

    ``params`` are the sizes of a large file's content, and of the whole
    stream when it has no file boundaries; ``between_files`` (default:
    ``params``) those of everything outside large files' content, where the
    stream starts. Not thread-safe. ``seed`` is the chunker seed derived from
    the index key (``keys.DerivedKeys.chunker_seed``)."""

    def __init__(
        self,
        seed: int,
        params: ChunkParams = ChunkParams(),
        between_files: ChunkParams | None = None,
    ) -> None:
        self._in_file = _Cutter(seed, params)
        self._between = _Cutter(seed, between_files) if between_files else self._in_file
        self._cutter = self._between
        self._pending = bytearray()
        self._start = 0  # stream offset of self._pending[0]

    @property
    def offset(self) -> int:
        """The stream offset of the next byte to be fed."""
        return self._start + len(self._pending)

    def feed(self, data: bytes | memoryview) -> list[Chunk]:
        """Add the next bytes of the stream; return the chunks they complete, in order."""
        out: list[Chunk] = []
        step = self._cutter.max
        view = memoryview(data)
        for at in range(0, len(view), step):
            self._pending += view[at : at + step]
            if len(self._pending) >= 2 * step:
                self._cut(out, final=False)
        return out

    def file_starts(self) -> list[Chunk]:
        """Say that a large file's content starts at the current position.

        Returns the chunks that ends: the pending piece, whatever its size,
        cut as at the end of the stream. The content is then cut with the
        large sizes until ``file_ends``."""
        out: list[Chunk] = []
        self._cut(out, final=True)
        self._cutter = self._in_file
        return out

    def cut(self) -> list[Chunk]:
        """Cut here: return the pending piece's chunks, whatever its size, cut as
        at the end of the stream (a run of small entries starts or ends; the
        sizes in use stay)."""
        out: list[Chunk] = []
        self._cut(out, final=True)
        return out

    def skip(self, size: int) -> None:
        """Say that the next ``size`` bytes of the stream are cut elsewhere (the
        file cache holds their chunks: a large file's whole content, or a run of
        small entries): only the stream offset moves.

        Raises ValueError unless nothing is pending (right after ``file_starts``
        or ``cut``), so the skipped bytes are cut as reading them would cut them."""
        if self._pending or size < 0:
            raise ValueError("bytes are skipped only right after a cut")
        self._start += size

    def file_ends(self) -> list[Chunk]:
        """Say that the large file's content ended with the last byte fed.

        Returns the content's last chunks (its tail cut as at the end of the
        stream, so the content is exactly the chunks since ``file_starts``);
        what follows is cut with the ``between_files`` sizes."""
        out: list[Chunk] = []
        self._cut(out, final=True)
        self._cutter = self._between
        return out

    def finish(self) -> list[Chunk]:
        """End the stream; return the last chunks. The chunker can then start a new stream."""
        out: list[Chunk] = []
        self._cut(out, final=True)
        self._start = 0
        self._cutter = self._between
        return out

    def _cut(self, out: list[Chunk], *, final: bool) -> None:
        pending = self._pending
        cutter = self._cutter
        at = 0
        with memoryview(pending) as view:
            # Only a piece with max_size bytes ahead is cut exactly as the whole
            # stream would cut it; the rest waits for more data or the end.
            while len(pending) - at >= cutter.max or (final and at < len(pending)):
                length = cutter.first_cut(view, at)
                out.append(Chunk(self._start + at, bytes(view[at : at + length])))
                at += length
        del pending[:at]
        self._start += at


def chunk_stream(
    reader: BinaryIO, seed: int, params: ChunkParams = ChunkParams()
) -> Iterator[Chunk]:
    """Yield the chunks of everything ``reader`` holds (no file boundaries)."""
    chunker = Chunker(seed, params)
    while block := reader.read(CHUNK_SIZE):
        yield from chunker.feed(block)
    yield from chunker.finish()
