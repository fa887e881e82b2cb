"""Format 2 pipelines: a source's stream as deduplicated chunks, and back.

Backup:  source -> (tar boundaries) -> chunker -> keyed id -> known? -> list
                                                          new -> zstd + AES-GCM (workers) -> pack
         large file or run of small entries unchanged (file cache) -> cached ids -> list
Restore: chunk list -> index -> record ranges (read ahead) -> decrypt, check id -> plaintext

The stream is byte for byte what format 1 stores, so restoring and verifying
a source reads the same tar, database or dump as before."""

from __future__ import annotations

import hashlib
import io
import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, TypeVar, cast

from reconciler.backup.cached_files import CachedFiles, SourceCache
from reconciler.backup.pipeline import tuned_for_throughput
from reconciler.dedup.boundaries import (
    ChunkFeeder,
    FileContent,
    RunStart,
    SmallRun,
    TarBoundarySink,
)
from reconciler.dedup.chunk_id import chunk_id, chunk_id_hex
from reconciler.dedup.chunk_list import ChunkListWriter, read_chunk_list
from reconciler.dedup.chunker import LARGE_FILE, SMALL_RUN_PARAMS, Chunk, Chunker
from reconciler.dedup.file_cache import CachedChunk
from reconciler.dedup.index import IndexEntry
from reconciler.dedup.keys import DerivedKeys
from reconciler.dedup.pack import open_record, record_key_id, seal_record, short_id
from reconciler.errors import IntegrityError, ObjectNotFoundError, WrongKeyError
from reconciler.failpoints import failpoint
from reconciler.repository.chunkstore import ChunkWriter
from reconciler.repository.objects import BackupObject
from reconciler.repository.records import StoredObject
from reconciler.repository.store import Repository
from reconciler.sources.known_files import KnownFiles
from reconciler.streams import ByteSink

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

T = TypeVar("T")

SEALING_AHEAD_BYTES = 16 << 20
"""Plaintext being named and sealed at once: the memory in flight, whatever
the chunk sizes (a few big chunks or many small ones between files)."""
SEALING_AHEAD = 64
"""At most this many chunks in flight (the file cache's chunks count too)."""
READING_AHEAD = 8
"""Records fetched and decrypted ahead of the restore's reader."""


def _workers() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 4))


@dataclass(frozen=True)
class ChunkedSource:
    """What storing one source's stream as chunks gave."""

    chunk_list: StoredObject
    chunks: int
    referenced_bytes: int
    """Stored bytes of every chunk the source references (what a restore reads)."""
    added_bytes: int
    """Stored bytes this source added to the repository."""
    skipped_files: int = 0
    """Large files not read: the file cache knew their chunks."""
    skipped_bytes: int = 0
    """Their content's size."""
    skipped_runs: int = 0
    """Runs of small entries not read: the file cache knew their chunks."""


@dataclass(frozen=True)
class RunKeys:
    """What a backup host holds: the index key's derived keys and this run's data key."""

    derived: DerivedKeys
    key_id: bytes
    data_key: bytes


@dataclass(frozen=True)
class _InFlight:
    """A chunk on its way to the list: being named and sealed, or known."""

    length: int
    future: Future[tuple[bytes, bytes | None]] | None
    content: FileContent | RunStart | None
    offset: int
    ident: bytes = b""
    """The id of a chunk the file cache gave (``future`` is None)."""
    ended: SmallRun | None = None
    """Not a chunk: a written run of small entries ended with the chunk before."""


class _ChunkSink:
    """Takes chunks in stream order; lists every one.

    Workers name each chunk (keyed BLAKE3) and seal it when it is not stored
    yet, so the thread reading the source only reads and cuts. Two equal
    chunks in flight at once may both be sealed; the writer stores one."""

    def __init__(
        self,
        writer: ChunkWriter,
        keys: RunKeys,
        listing: ChunkListWriter,
        pool: ThreadPoolExecutor,
        on_bytes: Callable[[int], None] | None,
        files: CachedFiles | None = None,
    ) -> None:
        self._writer = writer
        self._files = files
        self._keys = keys
        self._listing = listing
        self._pool = pool
        self._on_bytes = on_bytes
        self._inflight: deque[_InFlight] = deque()
        self._inflight_bytes = 0
        self.chunks = 0
        self.referenced = 0
        self.added = 0

    def take(self, chunk: Chunk, content: FileContent | RunStart | None = None) -> None:
        future = self._pool.submit(self._name_and_seal, chunk.data)
        self._inflight.append(_InFlight(len(chunk.data), future, content, chunk.offset))
        self._inflight_bytes += len(chunk.data)
        while len(self._inflight) > SEALING_AHEAD or self._inflight_bytes > SEALING_AHEAD_BYTES:
            self._settle()

    def _name_and_seal(self, data: bytes) -> tuple[bytes, bytes | None]:
        """On a worker: the chunk's id, and its record when it is not stored yet."""
        ident = chunk_id(self._keys.derived.chunk_id_key, data)
        if self._writer.stored_length(ident) is not None:
            return ident, None
        return ident, seal_record(ident, data, self._keys.key_id, self._keys.data_key)

    def take_known(self, content: FileContent) -> None:
        """List a skipped file's cached chunks (each still stored: the cache
        checked), counted as referenced, not added."""
        if self._files is None:
            raise ValueError("content was skipped without a file cache")
        for cached in self._files.chunks_of(content):
            self._inflight.append(_InFlight(cached.length, None, None, 0, cached.id))
            while len(self._inflight) > SEALING_AHEAD:
                self._settle()

    def take_known_run(self, run: SmallRun) -> None:
        """List a skipped run's cached chunks (each still stored: the cache checked)."""
        if self._files is None:
            raise ValueError("a run was skipped without a file cache")
        for cached in self._files.chunks_of_run(run):
            self._inflight.append(_InFlight(cached.length, None, None, 0, cached.id))
            while len(self._inflight) > SEALING_AHEAD:
                self._settle()

    def run_ends(self, run: SmallRun) -> None:
        """A written run ended: once its chunks are listed, the cache remembers it."""
        if self._files is not None:
            self._inflight.append(_InFlight(0, None, None, 0, ended=run))

    def _settle(self) -> None:
        item = self._inflight.popleft()
        if item.ended is not None:
            assert self._files is not None
            self._files.run_read(item.ended)
            return
        record: bytes | None = None
        if item.future is not None:
            self._inflight_bytes -= item.length
            ident, record = item.future.result()
        else:
            ident = item.ident
        if record is not None:
            before = self._writer.stats.new_bytes
            stored = self._writer.add(ident, record)
            added = self._writer.stats.new_bytes - before
            self.added += added
            if self._on_bytes is not None and added:
                self._on_bytes(added)
        else:
            known = self._writer.stored_length(ident)
            assert known is not None
            stored = known
        if item.content is not None and self._files is not None:
            chunk = CachedChunk(ident, item.length)
            if isinstance(item.content, RunStart):
                self._files.run_chunk_read(item.content, item.offset, chunk)
            else:
                self._files.chunk_read(item.content, item.offset, chunk)
        self.referenced += stored
        self.chunks += 1
        self._listing.add(ident, item.length)

    def drain(self) -> None:
        while self._inflight:
            self._settle()


class _SkippingTree:
    """The files source's ``KnownFiles``: the file cache (if any) answers, the
    tar stream's boundary sink is told where runs of small entries start and
    end (the chunker cuts there, cache or not) and where content is skipped."""

    min_size = LARGE_FILE

    def __init__(self, files: CachedFiles | None, stream: TarBoundarySink) -> None:
        self._files = files
        self._stream = stream
        self.looks_up_runs = files is not None and files.looks_up_runs

    def known(self, name: bytes, st: os.stat_result, /) -> bool:
        return self._files is not None and self._files.known(name, st)

    def skip(self, size: int, /) -> None:
        self._stream.skip(size)

    def run_starts(self) -> None:
        self._stream.run_starts()

    def known_run(self, entries: bytes, /) -> int | None:
        return None if self._files is None else self._files.known_run(entries)

    def skip_run(self, size: int, /) -> None:
        self._stream.skip_run(size)

    def run_ends(self, entries: bytes, /) -> None:
        self._stream.run_ends(entries)


class _StreamFeeder:
    """A ByteSink feeding the chunker directly (sources that are not tar streams)."""

    def __init__(self, feeder: ChunkFeeder) -> None:
        self._feeder = feeder

    def write(self, data: bytes) -> int:
        self._feeder.write(memoryview(data))
        return len(data)


def store_chunked(
    list_object: BackupObject,
    writer: ChunkWriter,
    keys: RunKeys,
    produce: Callable[[ByteSink, KnownFiles | None], T],
    tar_stream: bool,
    on_bytes: Callable[[int], None] | None = None,
    file_cache: SourceCache | None = None,
) -> tuple[ChunkedSource, T]:
    """Run ``produce`` with a sink whose stream is stored as chunks; write its chunk list.

    ``tar_stream`` says the stream is a files source's tar, whose file
    boundaries the chunker follows; with ``file_cache`` too, ``produce`` is
    given a ``KnownFiles`` through which unchanged large files are not read
    (and the files it reads are remembered in the cache). New chunks go to
    ``writer`` (indexed when the run's writer finishes); the chunk list
    object is committed when ``produce`` returns, and removed on any
    exception."""
    with (
        tuned_for_throughput(),
        ThreadPoolExecutor(_workers(), thread_name_prefix="seal") as pool,
        list_object.open_write() as raw,
    ):
        measured = _Measured(raw)
        listing = ChunkListWriter(measured, keys.derived.index_encryption_key)
        files = CachedFiles(file_cache, writer) if tar_stream and file_cache is not None else None
        sink = _ChunkSink(writer, keys, listing, pool, on_bytes, files)
        # A tar stream's large files are whole chunk runs, with smaller chunks
        # between them (headers and small files); other streams are one run.
        chunker = Chunker(
            keys.derived.chunker_seed, between_files=SMALL_RUN_PARAMS if tar_stream else None
        )
        feeder = ChunkFeeder(
            chunker, sink.take, sink.take_known, sink.take_known_run, sink.run_ends
        )
        target: TarBoundarySink | _StreamFeeder = (
            TarBoundarySink(feeder) if tar_stream else _StreamFeeder(feeder)
        )
        known = _SkippingTree(files, target) if isinstance(target, TarBoundarySink) else None
        result = produce(cast(ByteSink, target), known)
        if isinstance(target, TarBoundarySink):
            target.close()
        feeder.finish()
        sink.drain()
        listing.close()
        failpoint("object-upload")
    stored = StoredObject(list_object.name, measured.size, measured.sha256.hexdigest())
    skipped = (
        (files.hits, files.skipped_bytes, files.skipped_runs) if files is not None else (0, 0, 0)
    )
    return ChunkedSource(stored, sink.chunks, sink.referenced, sink.added, *skipped), result


class _Measured:
    def __init__(self, out: ByteSink) -> None:
        self._out = out
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        self._out.write(data)
        return len(data)


class DataKeys:
    """Data keys by key id, unwrapped once each (``unwrap`` is given a key id's hex)."""

    def __init__(self, unwrap: Callable[[str], bytes]) -> None:
        self._unwrap = unwrap
        self._keys: dict[bytes, bytes] = {}

    def __call__(self, key_id: bytes) -> bytes:
        key = self._keys.get(key_id)
        if key is None:
            key = self._keys[key_id] = self._unwrap(key_id.hex())
        return key

    def available(self, key_id: bytes) -> bool:
        """Whether the key can be had (unwrapping it if not yet done)."""
        try:
            self(key_id)
        except (WrongKeyError, IntegrityError):
            return False
        return True


def chunk_ids(
    list_object: BackupObject, expected: StoredObject, keys: DerivedKeys
) -> Iterator[tuple[bytes, int]]:
    """The (id, length) of every chunk of a source, in order, checked against the
    manifest's size and SHA-256 at the end. Needs only the index key."""
    with list_object.open_read() as raw:
        measured = _MeasuredReader(raw)
        yield from read_chunk_list(
            list_object.label, cast(BinaryIO, measured), keys.index_encryption_key
        )
        while measured.read(1 << 20):
            pass
    if measured.size != expected.size_bytes or measured.sha256.hexdigest() != expected.sha256:
        raise IntegrityError(f"{list_object.label} does not match its manifest")


class _MeasuredReader:
    def __init__(self, source: BinaryIO) -> None:
        self._source = source
        self.sha256 = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1, /) -> bytes:
        data = self._source.read(size)
        self.sha256.update(data)
        self.size += len(data)
        return data


def read_chunk(
    repository: Repository,
    index_lookup: Callable[[bytes], list[IndexEntry]],
    ident: bytes,
    keys: DerivedKeys,
    data_keys: DataKeys,
) -> tuple[bytes, int]:
    """One chunk's plaintext, authenticated and checked against its keyed id, and
    its stored length.

    A chunk stored under several data keys (again under a rotated
    certificate's) is read from the first place whose key the caller has."""
    places = index_lookup(ident)
    if not places:
        raise IntegrityError(
            f"chunk {chunk_id_hex(ident)[:16]} is missing from the index of"
            f" {repository.description}"
        )
    for entry in places[:-1]:
        if data_keys.available(entry.key_id):
            return _read_at(repository, entry, ident, keys, data_keys)
    return _read_at(repository, places[-1], ident, keys, data_keys)


def _read_at(
    repository: Repository,
    entry: IndexEntry,
    ident: bytes,
    keys: DerivedKeys,
    data_keys: DataKeys,
) -> tuple[bytes, int]:
    label = repository.pack_label(entry.pack_id)
    try:
        record = repository.read_record(entry)
    except ObjectNotFoundError:
        raise IntegrityError(
            f"{label} is missing; it holds chunk {chunk_id_hex(ident)[:16]}"
        ) from None
    data_key = data_keys(record_key_id(record))
    return open_record(label, record, ident, data_key, keys.chunk_id_key), entry.length


@contextmanager
def open_chunked(
    repository: Repository,
    list_object: BackupObject,
    expected: StoredObject,
    keys: DerivedKeys,
    data_keys: DataKeys,
    on_bytes: Callable[[int], None] | None = None,
) -> Iterator[BinaryIO]:
    """A reader of a format 2 source's plaintext stream, every chunk checked.

    Records are fetched and decrypted ahead of the reader on worker threads."""
    index = repository.chunk_index(keys)
    ids = chunk_ids(list_object, expected, keys)

    def fetch(ident: bytes, length: int) -> bytes:
        data, stored = read_chunk(repository, index.lookup_all, ident, keys, data_keys)
        if len(data) != length:
            raise IntegrityError(
                f"chunk {chunk_id_hex(ident)[:16]} of {list_object.label} has {len(data)} bytes,"
                f" its list records {length}"
            )
        if on_bytes is not None:
            on_bytes(stored)
        return data

    with (
        tuned_for_throughput(),
        ThreadPoolExecutor(_workers(), thread_name_prefix="fetch") as pool,
    ):
        reader = _ChunkReader(pool, ids, fetch)
        try:
            yield cast(BinaryIO, reader)
            reader.read_to_end()
        finally:
            reader.stop()


class _ChunkReader(io.RawIOBase):
    def __init__(
        self,
        pool: ThreadPoolExecutor,
        ids: Iterator[tuple[bytes, int]],
        fetch: Callable[[bytes, int], bytes],
    ) -> None:
        super().__init__()
        self._pool = pool
        self._ids = ids
        self._fetch = fetch
        self._ahead: deque[Future[bytes]] = deque()
        self._chunk = b""
        self._pos = 0
        self._ended = False
        self._fill()

    def _fill(self) -> None:
        while not self._ended and len(self._ahead) < READING_AHEAD:
            item = next(self._ids, None)
            if item is None:
                self._ended = True
                return
            self._ahead.append(self._pool.submit(self._fetch, *item))

    def _current(self) -> bytes:
        if self._pos < len(self._chunk):
            return self._chunk
        if not self._ahead:
            return b""
        future = self._ahead.popleft()
        self._fill()
        self._chunk, self._pos = future.result(), 0
        return self._chunk

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        chunk = self._current()
        view = memoryview(buffer).cast("B")
        n = min(len(view), len(chunk) - self._pos)
        view[:n] = memoryview(chunk)[self._pos : self._pos + n]
        self._pos += n
        return n

    def read(self, size: int | None = -1, /) -> bytes:
        if size is None or size < 0:
            parts = []
            while part := self.read(1 << 22):
                parts.append(part)
            return b"".join(parts)
        chunk = self._current()
        start = self._pos
        end = min(len(chunk), start + size)
        self._pos = end
        return chunk if start == 0 and end == len(chunk) else chunk[start:end]

    def read_to_end(self) -> None:
        while self.read(1 << 22):
            pass

    def stop(self) -> None:
        for future in self._ahead:
            future.cancel()
        self._ahead.clear()
        self._ended = True


def check_chunked(
    repository: Repository, list_object: BackupObject, expected: StoredObject, keys: DerivedKeys
) -> str | None:
    """Without the private key: None when every chunk of a source is indexed and
    its pack holds it where the index says, else a sentence saying what is wrong.

    The chunk list must match the manifest's size and SHA-256; each pack a
    chunk lies in is checked once: its trailer (readable with the index key)
    must list the chunk at the indexed place, and the record's stored bytes
    must hash as the trailer records."""
    index = repository.chunk_index(keys)
    packs = PackChecker(repository, keys)
    for ident, _length in chunk_ids(list_object, expected, keys):
        entry = index.lookup(ident)
        if entry is None:
            return (
                f"chunk {chunk_id_hex(ident)[:16]} of {list_object.label} is missing from the index"
            )
        problem = packs.check(entry)
        if problem is not None:
            return problem
    return None


class PackChecker:
    """Checks packs once each: present, trailer readable, records hashing as recorded."""

    def __init__(self, repository: Repository, keys: DerivedKeys) -> None:
        self._repository = repository
        self._keys = keys
        self._verdicts: dict[
            bytes, tuple[str | None, dict[bytes, tuple[int, int]], set[bytes]]
        ] = {}

    def check(self, entry: IndexEntry) -> str | None:
        verdict = self._verdicts.get(entry.pack_id)
        if verdict is None:
            verdict = self._verdicts[entry.pack_id] = self._check_pack(entry.pack_id)
        problem, places, damaged = verdict
        if problem is not None:
            return problem
        label = self._repository.pack_label(entry.pack_id)
        if places.get(entry.chunk_id) != (entry.offset, entry.length):
            return f"{label} does not hold chunk {short_id(entry.chunk_id)} where the index says"
        if entry.chunk_id in damaged:
            return (
                f"chunk {short_id(entry.chunk_id)} in {label} is damaged: its stored bytes do"
                " not hash as the pack's trailer records"
            )
        return None

    def _check_pack(
        self, pack_id: bytes
    ) -> tuple[str | None, dict[bytes, tuple[int, int]], set[bytes]]:
        try:
            entries, damaged = self._repository.check_pack(pack_id, self._keys)
        except ObjectNotFoundError:
            return f"{self._repository.pack_label(pack_id)} is missing", {}, set()
        except IntegrityError as exc:
            return str(exc), {}, set()
        return None, {e.chunk_id: (e.offset, e.length) for e in entries}, damaged
