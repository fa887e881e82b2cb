"""Where each large file's content starts and ends in a ``files`` source's tar stream.

``TarBoundarySink`` is a ``ByteSink`` the tar writer writes to unchanged. It
reads the PAX and ustar headers as they pass, forwards every byte to its
``BoundaryTarget`` (for a backup, ``ChunkFeeder``: the chunker) and, for each
regular file of at least ``LARGE_FILE`` bytes (its size is in its headers),
calls the target's ``file_starts`` just before the content's first byte and
``file_ends`` just after its last. It never holds a file's content: it keeps at most one
512-byte header block and one PAX header's records (a few hundred bytes,
whatever the tree), and content passes through as views of what was written.

Why parse rather than have the tar writer report its offsets: the writer
gathers headers and small files into writes of up to 1 MiB, so its own offsets
would need bookkeeping in its hot path and a change to ``sources``; parsing
needs nothing outside ``dedup`` and reads only the headers, a small share of
the bytes (see docs/design.md for the measured cost).

The stream must be a tar archive; anything else (a header without the ustar
magic, a stream that ends inside an entry) raises ``SourceError``, since a
wrong boundary would silently cost deduplication.

A large file's content the target already knows (the file cache's) is not
written at all: the writer calls ``skip`` with its size where the content
would be, and the target hears ``skip`` between ``file_starts`` and
``file_ends``; the stream's offsets are those of the whole stream.

Runs of small entries. The tar writer also says where each run of small
entries (a folder's header and the small files and links after it, up to the
next folder or large file) starts and ends (``run_starts``, ``run_ends``);
the chunker cuts there, so a run is exactly a list of whole chunks the file
cache can hold, and an unchanged run is skipped as a large file's content is
(``skip_run``): the target hears ``skip_run`` instead of its bytes.
"""

from __future__ import annotations

import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from reconciler.dedup.chunker import LARGE_FILE, Chunk, Chunker
from reconciler.errors import SourceError

BLOCK = 512
_REGULAR_TYPES = frozenset((tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE))
_PAX_TYPES = frozenset((tarfile.XHDTYPE, tarfile.SOLARIS_XHDTYPE))
_MAX_PAX_RECORDS = 1 << 20
"""A PAX header longer than this is refused: ours hold a name or two."""


@dataclass(frozen=True)
class FileContent:
    """A regular file in the stream: its archive name, where its content starts, its size."""

    name: bytes
    offset: int
    size: int


@dataclass(frozen=True)
class RunStart:
    """The run of small entries a chunk is part of: where the run starts."""

    offset: int


@dataclass(frozen=True)
class SmallRun:
    """A run of small entries: where it starts, its length, and (when it was
    written) the tar writer's description of its entries, the file cache's key."""

    offset: int
    size: int
    entries: bytes = b""


class BoundaryTarget(Protocol):
    """What the tar stream's bytes and its large files' boundaries go to."""

    def write(self, data: memoryview, /) -> None:
        """The next bytes of the stream (a view valid only during the call)."""

    def file_starts(self, content: FileContent, /) -> None:
        """A large file's content starts with the next byte written."""

    def skip(self, content: FileContent, /) -> None:
        """The content just announced by ``file_starts`` is known and will not be
        written; ``file_ends`` follows at once."""

    def file_ends(self) -> None:
        """The content announced by the last ``file_starts`` ended with the last byte written."""

    def run_starts(self) -> None:
        """A run of small entries starts with the next byte written (or skipped)."""

    def skip_run(self, run: SmallRun, /) -> None:
        """The run just started is known and its ``run.size`` bytes are not written."""

    def run_ends(self, run: SmallRun, /) -> None:
        """The run written since ``run_starts`` ended with the last byte written."""


ChunkHandler = Callable[[Chunk, FileContent | RunStart | None], object]
"""Takes each chunk in stream order, with the large file whose content it is
part of, or the run of small entries it is part of (None for chunks outside
both). A large file's content is exactly its chunks: the last one ends at
``content.offset + content.size``; a run's chunks end with ``run_ends``."""

KnownHandler = Callable[[FileContent], object]
"""Takes a large file's content that was skipped (``BoundaryTarget.skip``), in
stream order with the chunks: whoever said it was known lists its chunks."""

RunHandler = Callable[[SmallRun], object]
"""Takes a run of small entries, in stream order with the chunks: a skipped
one (whoever said it was known lists its chunks), or one that was written,
after its last chunk."""


class ChunkFeeder:
    """A ``BoundaryTarget`` cutting the stream with ``chunker``; chunks go to ``on_chunk``.

    For the format's chunks, ``chunker`` is
    ``Chunker(seed, between_files=SMALL_RUN_PARAMS)``. Skipped content goes
    to ``on_known`` (without it, ``skip`` raises ValueError), skipped runs
    of small entries to ``on_known_run`` (likewise), and written runs, after
    their last chunk, to ``on_run``."""

    def __init__(
        self,
        chunker: Chunker,
        on_chunk: ChunkHandler,
        on_known: KnownHandler | None = None,
        on_known_run: RunHandler | None = None,
        on_run: RunHandler | None = None,
    ) -> None:
        self._chunker = chunker
        self._on_chunk = on_chunk
        self._on_known = on_known
        self._on_known_run = on_known_run
        self._on_run = on_run
        self._file: FileContent | None = None  # the large file being fed
        self._run: RunStart | None = None  # the run of small entries being fed

    def write(self, data: memoryview, /) -> None:
        # Inside a large file every chunk the chunker completes is the file's:
        # it was cut at the content's start and will be at its end. A run
        # likewise.
        self._emit(self._chunker.feed(data), self._file or self._run)

    def file_starts(self, content: FileContent, /) -> None:
        self._emit(self._chunker.file_starts(), self._run)
        self._file = content

    def skip(self, content: FileContent, /) -> None:
        if self._on_known is None or content != self._file:
            raise ValueError("only an announced large file's content can be skipped")
        self._chunker.skip(content.size)
        self._on_known(content)

    def file_ends(self) -> None:
        self._emit(self._chunker.file_ends(), self._file)
        self._file = None

    def run_starts(self) -> None:
        self._emit(self._chunker.cut(), self._file or self._run)
        self._run = RunStart(self._chunker.offset)

    def skip_run(self, run: SmallRun, /) -> None:
        if self._on_known_run is None or self._run != RunStart(run.offset):
            raise ValueError("only a run just started can be skipped")
        self._chunker.skip(run.size)
        self._run = None
        self._on_known_run(run)

    def run_ends(self, run: SmallRun, /) -> None:
        self._emit(self._chunker.cut(), self._run)
        self._run = None
        if self._on_run is not None:
            self._on_run(run)

    def finish(self) -> None:
        """End the stream: the chunker's last chunks go to ``on_chunk``."""
        self._emit(self._chunker.finish(), self._file or self._run)
        self._file = self._run = None

    def _emit(self, chunks: list[Chunk], file: FileContent | RunStart | None) -> None:
        for chunk in chunks:
            self._on_chunk(chunk, file)


class TarBoundarySink:
    """A ``ByteSink`` that passes a tar stream to ``target``, telling it where
    the content of each regular file of at least ``large_file`` bytes starts and ends."""

    def __init__(self, target: BoundaryTarget, large_file: int = LARGE_FILE) -> None:
        self._target = target
        self._large_file = max(1, large_file)  # an empty file has no content to place
        self._offset = 0  # stream offset of the next byte written
        self._header = bytearray()  # the part of a 512-byte header block seen so far
        self._skip = 0  # bytes of data or padding to pass before the next header
        self._padding = 0  # after a large file's content (in _skip): its padding
        self._in_file = False  # _skip is a large file's content
        self._content: FileContent | None = None  # that file, until its first byte
        self._pax: bytearray | None = None  # a PAX header's records being gathered
        self._pax_left = 0
        self._pending: dict[bytes, bytes] = {}  # the records of the last PAX header
        self._ended = False  # the end-of-archive block was seen
        self._run_at: int | None = None  # where the run of small entries being written starts

    def write(self, data: bytes, /) -> None:
        with memoryview(data) as view:
            self._write(view)

    def skip(self, size: int, /) -> None:
        """In place of writing a large file's content: the ``size`` bytes after
        what was written are that content, known to the target (it hears
        ``skip`` and ``file_ends``). Padding and later entries are written as
        usual.

        Raises ValueError unless the last byte written was the end of the
        header of a large file of exactly ``size`` bytes."""
        content = self._content
        if content is None or self._offset != content.offset or size != content.size:
            raise ValueError(f"no large file's content of {size} bytes starts at {self._offset}")
        self._content = None
        self._offset += size
        self._skip, self._padding, self._in_file = self._padding, 0, False
        self._target.skip(content)
        self._target.file_ends()

    def run_starts(self) -> None:
        """A run of small entries starts with the next byte (the target hears
        ``run_starts``). Raises ValueError unless between two entries."""
        self._check_between_entries("a run of small entries cannot start")
        self._run_at = self._offset
        self._target.run_starts()

    def skip_run(self, size: int, /) -> None:
        """In place of writing the run just started: its ``size`` bytes are known
        to the target (it hears ``skip_run``). Raises ValueError unless a run
        started right at the last byte written."""
        if self._run_at != self._offset:
            raise ValueError(f"no run of small entries starts at {self._offset}")
        self._offset += size
        self._run_at = None
        self._target.skip_run(SmallRun(self._offset - size, size))

    def run_ends(self, entries: bytes, /) -> None:
        """The run written since ``run_starts`` ended with the last byte written;
        ``entries`` describes it (the target hears ``run_ends``). Raises
        ValueError unless a run was started and the stream is between entries."""
        start = self._run_at
        if start is None:
            raise ValueError("no run of small entries was started")
        self._check_between_entries("a run of small entries cannot end")
        self._run_at = None
        self._target.run_ends(SmallRun(start, self._offset - start, entries))

    def _check_between_entries(self, what: str) -> None:
        if self._header or self._skip or self._pax is not None or self._pending or self._ended:
            raise ValueError(f"{what} inside an entry, at byte {self._offset}")

    def close(self) -> None:
        """Check the stream ended between entries (raises ``SourceError`` if not)."""
        if self._header or self._skip or self._pax is not None:
            raise SourceError(
                f"the tar stream ends inside an entry, at byte {self._offset}"
                " (a file boundary would be wrong)"
            )

    def _write(self, view: memoryview) -> None:
        # Bytes go to the target in as few pieces as possible: everything up to
        # a file's first content byte, then the rest, not one piece per field.
        at, end, sent = 0, len(view), 0
        while at < end and not self._ended:
            starts, ends = None, False
            if self._pax is not None:  # before its padding, in _skip
                step = min(self._pax_left, end - at)
                self._pax += view[at : at + step]
                self._pax_left -= step
                self._offset += step
                if not self._pax_left:
                    self._end_pax()
            elif self._skip:
                step = min(self._skip, end - at)
                self._skip -= step
                self._content = None
                self._offset += step
                if not self._skip and self._in_file:
                    ends, self._in_file = True, False
                    self._skip, self._padding = self._padding, 0
            elif not self._header and end - at >= BLOCK:  # a whole header block in view
                step = BLOCK
                self._offset += step
                starts = self._end_header(bytes(view[at : at + BLOCK]))
            else:
                step = min(BLOCK - len(self._header), end - at)
                self._header += view[at : at + step]
                self._offset += step
                if len(self._header) == BLOCK:
                    block = bytes(self._header)
                    self._header.clear()
                    starts = self._end_header(block)
            at += step
            if starts is not None or ends:
                if at > sent:
                    self._target.write(view[sent:at])
                sent = at
                if starts is not None:
                    self._target.file_starts(starts)
                else:
                    self._target.file_ends()
        if sent < end:
            self._target.write(view[sent:])

    def _end_header(self, block: bytes) -> FileContent | None:
        """Read a header block that ends at ``self._offset``; the large file
        whose content starts there, if it is a large regular file's header."""
        header_at = self._offset - BLOCK
        if not any(block):
            self._ended = True  # what follows is the end-of-archive padding
            return None
        _check_magic(block, header_at)
        kind = block[156:157]
        size = _size(block, self._pending, header_at)
        data_blocks = size + (-size % BLOCK)
        if kind in _PAX_TYPES:
            if size > _MAX_PAX_RECORDS:
                raise SourceError(f"the tar header at byte {header_at} is too long")
            self._pax, self._pax_left = bytearray(), size
            self._skip = data_blocks - size  # its padding, once the records are in
            if not size:
                self._end_pax()
            return None
        pending, self._pending = self._pending, {}
        self._skip = data_blocks
        if kind in _REGULAR_TYPES and size >= self._large_file:
            self._skip, self._padding, self._in_file = size, data_blocks - size, True
            name = pending.get(b"path", block[:100].split(b"\0", 1)[0])
            self._content = FileContent(name, self._offset, size)
            return self._content
        return None

    def _end_pax(self) -> None:
        records = bytes(self._pax or b"")
        self._pax = None
        self._pending = _pax_records(records, self._offset - len(records))


def _check_magic(block: bytes, offset: int) -> None:
    # The magic rather than the checksum: it shows a parser out of step with the
    # stream as surely, at a tenth of the cost (summing 512 bytes per header
    # was a third of this module's time on a tree of small files).
    if block[257:262] != b"ustar":
        raise SourceError(f"the tar stream has no valid header at byte {offset}")


def _size(block: bytes, pax: dict[bytes, bytes], offset: int) -> int:
    """The entry's data size: the PAX ``size`` record, else the ustar field."""
    try:
        if b"size" in pax:
            return int(pax[b"size"])
        field = block[124:136]
        if field[0] & 0x80:  # base-256, as GNU tar writes large sizes
            return int.from_bytes(field[1:], "big")
        return int(field.split(b"\0", 1)[0].strip() or b"0", 8)
    except ValueError:
        raise SourceError(f"the tar header at byte {offset} has no valid size") from None


def _pax_records(records: bytes, offset: int) -> dict[bytes, bytes]:
    """``{keyword: value}`` of PAX records ``"<length> <keyword>=<value>\\n"``."""
    out: dict[bytes, bytes] = {}
    at = 0
    while at < len(records) and records[at] != 0:
        space = records.find(b" ", at)
        try:
            length = int(records[at:space])
        except ValueError:
            raise SourceError(f"the tar stream has a bad PAX header at byte {offset}") from None
        record = records[space + 1 : at + length]
        keyword, equals, value = record.partition(b"=")
        if length <= 0 or not equals or not record.endswith(b"\n"):
            raise SourceError(f"the tar stream has a bad PAX header at byte {offset}")
        out[keyword] = value[:-1]
        at += length
    return out
