"""Where a deduplicating (format 2) repository keeps chunks: packs and their index.

A chunk is stored once, as a record in a pack (``packs/<pack id>.pack``); the
index maps its id to the pack, offset and length. The index is compacted
shards (``index/shards/``, listed by the pointer ``index/index.json``) plus one
delta per backup run since the last compaction (``index/deltas/``). Everything
here needs the index key only: a backup host finds stored chunks and writes
new ones, and can never decrypt a record.

Rules that keep every chunk a kept backup references:

* A run writes its packs, then its delta, and only then (``PendingBackup.commit``)
  the manifest that references them: a committed backup's chunks are always
  indexed.
* Reclaiming (under the writer lock) writes the new shards, then switches the
  pointer (naming the deltas it folded in), then deletes those deltas and the
  old shards, and only then the packs nothing indexed points to any more.
  A reader ignores deltas the pointer names, so after a crash at any step the
  index it sees points only to packs that still exist, and the next reclaim
  finishes the deletions: its pointer names the folded-in deltas still
  there too, so that none becomes visible again once its pack is gone.
* ``RECLAIM_DUE`` is written before a prune deletes anything and removed when
  the reclaim after it ends, so the next apply knows a reclaim is owed.
"""

from __future__ import annotations

import json
import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from reconciler.dedup.index import (
    IndexEntry,
    IndexRun,
    open_run,
    prefix_of,
    seal_run,
    shard_bits_for,
)
from reconciler.dedup.keys import DerivedKeys
from reconciler.dedup.pack import (
    TARGET_PACK_SIZE,
    PackEntry,
    PackWriter,
    damaged_records,
    new_pack_id,
    read_trailer,
    record_key_id,
)
from reconciler.errors import IntegrityError, ObjectNotFoundError
from reconciler.failpoints import failpoint
from reconciler.repository.layout import (
    DATA_KEYS_DIR,
    DELTAS_DIR,
    INDEX_POINTER,
    PACK_SUFFIX,
    PACKS_DIR,
    RUN_SUFFIX,
    SHARDS_DIR,
    is_temporary,
)
from reconciler.storage.base import Storage

REPACK_BELOW = 0.5
"""A pack whose live records fill less than this share of it is rewritten by reclaim."""


def pack_key(pack_id: bytes) -> str:
    return f"{PACKS_DIR}/{pack_id.hex()}{PACK_SUFFIX}"


@dataclass(frozen=True)
class IndexPointer:
    """Which compacted shards are the index, and which deltas they already hold."""

    generation: int = 0
    bits: int = 0
    shards: tuple[str, ...] = ()
    consumed: tuple[str, ...] = ()

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "generation": self.generation,
                "bits": self.bits,
                "shards": list(self.shards),
                "consumedDeltas": list(self.consumed),
            },
            indent=1,
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes, where: str) -> IndexPointer:
        try:
            data = json.loads(raw)
            pointer = cls(
                generation=int(data["generation"]),
                bits=int(data["bits"]),
                shards=tuple(str(s) for s in data["shards"]),
                consumed=tuple(str(d) for d in data["consumedDeltas"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise IntegrityError(f"{where} is damaged ({type(exc).__name__})") from None
        if not 0 <= pointer.bits <= 16 or len(pointer.shards) not in (0, 1 << pointer.bits):
            raise IntegrityError(f"{where} is damaged: its shard list does not match its bits")
        return pointer


class ChunkIndex:
    """The index as one host sees it: shards loaded on demand, deltas all at once.

    Lookups are binary searches over each run's bytes; nothing holds a Python
    object per entry."""

    def __init__(self, storage: Storage, where: Callable[[str], str], keys: DerivedKeys) -> None:
        self._storage = storage
        self._where = where
        self._key = keys.index_encryption_key
        self.pointer = read_pointer(storage, where)
        consumed = set(self.pointer.consumed)
        names = _run_names(storage, DELTAS_DIR)
        self.delta_names = tuple(n for n in names if n not in consumed)
        # Deltas already folded in whose deletion a crash interrupted.
        self.folded_names = tuple(n for n in names if n in consumed)
        self._deltas = [self._open(f"{DELTAS_DIR}/{n}") for n in self.delta_names]
        self._shards: dict[int, IndexRun] = {}

    def _open(self, key: str) -> IndexRun:
        return open_run(self._where(key), self._storage.read(key), self._key)

    def _shard(self, number: int) -> IndexRun:
        shard = self._shards.get(number)
        if shard is None:
            name = self.pointer.shards[number]
            shard = self._shards[number] = self._open(f"{SHARDS_DIR}/{name}")
        return shard

    def lookup(
        self, chunk_id: bytes, usable_keys: frozenset[bytes] | None = None
    ) -> IndexEntry | None:
        """Where ``chunk_id`` is stored (under one of ``usable_keys``, when given)."""
        for entry in self.lookup_all(chunk_id):
            if usable_keys is None or entry.key_id in usable_keys:
                return entry
        return None

    def lookup_all(self, chunk_id: bytes) -> list[IndexEntry]:
        """Every place ``chunk_id`` is stored: one per data key it is under."""
        found: list[IndexEntry] = []
        if self.pointer.shards:
            found += self._shard(prefix_of(chunk_id, self.pointer.bits)).lookup_all(chunk_id)
        for delta in self._deltas:
            found += delta.lookup_all(chunk_id)
        return found

    def entries(self) -> Iterator[IndexEntry]:
        """Every entry, once per id and key id (shards first, then deltas, oldest first)."""
        seen: set[bytes] = set()
        runs: Iterable[IndexRun] = (
            *(self._shard(n) for n in range(len(self.pointer.shards))),
            *self._deltas,
        )
        for run in runs:
            for entry in run.entries():
                identity = entry.chunk_id + entry.key_id
                if identity not in seen:
                    seen.add(identity)
                    yield entry


def read_pointer(storage: Storage, where: Callable[[str], str]) -> IndexPointer:
    try:
        raw = storage.read(INDEX_POINTER)
    except ObjectNotFoundError:
        return IndexPointer()
    return IndexPointer.from_json(raw, where(INDEX_POINTER))


def _run_names(storage: Storage, folder: str) -> list[str]:
    return [e.name for e in storage.list_dir(folder) if e.name.endswith(RUN_SUFFIX)]


@dataclass
class RunStats:
    """What one run stored: new chunks and their stored bytes."""

    new_chunks: int = 0
    new_bytes: int = 0
    packs: int = 0


class ChunkWriter:
    """One backup run's new chunks: records go into packs, entries into its delta.

    Packs are streamed to the storage by a thread of its own (``_PackUploader``),
    so that writing one overlaps sealing the next chunks. ``finish`` writes the
    last pack and the delta; until then nothing this run stored is indexed,
    and a crash leaves packs that reclaim removes. ``abandon`` stops it after
    a failure, committing no further pack."""

    def __init__(
        self,
        storage: Storage,
        index: ChunkIndex,
        keys: DerivedKeys,
        name: str,
        usable_keys: frozenset[bytes] | None = None,
        before_first_pack: Callable[[], None] | None = None,
    ) -> None:
        self._storage = storage
        self._index = index
        self._keys = keys
        self._name = name
        self._usable = usable_keys
        self._new: dict[bytes, int] = {}
        self._uploader: _PackUploader | None = None
        self._before_first_pack = before_first_pack
        self.stats = RunStats()

    def stored_length(self, chunk_id: bytes) -> int | None:
        """The stored (record) length of a chunk already in the repository, else None.

        A chunk under a data key not in ``usable_keys`` counts as not stored:
        after a certificate rotation, a backup only uses chunks its own
        certificate's private key can open (until key.rewrap moves the older
        ones), so every backup restores with the key it names."""
        known = self._new.get(chunk_id)
        if known is not None:
            return known
        entry = self._index.lookup(chunk_id, self._usable)
        return None if entry is None else entry.length

    def add(self, chunk_id: bytes, record: bytes) -> int:
        """Store one sealed record (``pack.seal_record``); returns its stored length.

        Raises what writing a pack raised (StorageError...)."""
        known = self._new.get(chunk_id)
        if known is not None:
            return known
        if self._uploader is None:
            self._uploader = _PackUploader(
                self._storage, self._keys.index_encryption_key, self._before_first_pack
            )
        self._uploader.put(chunk_id, record)
        self._new[chunk_id] = len(record)
        self.stats.new_chunks += 1
        self.stats.new_bytes += len(record)
        return len(record)

    def finish(self) -> None:
        """Write the last pack and the run's delta: from now on its chunks are indexed."""
        if self._uploader is None:
            return
        entries = self._uploader.close()
        self.stats.packs = self._uploader.packs
        body = seal_run(entries, 0, 0, self._keys.index_encryption_key)
        self._storage.write_atomic(f"{DELTAS_DIR}/{self._name}{RUN_SUFFIX}", body)

    def abandon(self) -> None:
        """Stop after a failure: the pack being written is discarded."""
        if self._uploader is not None:
            self._uploader.abandon()


_UPLOAD_QUEUE_RECORDS = 16
"""Records waiting for the uploader (about 1 MiB each, 4 MiB at most)."""


class _PackUploader:
    """Streams records into packs of TARGET_PACK_SIZE on its own thread."""

    def __init__(
        self,
        storage: Storage,
        index_encryption_key: bytes,
        before_first_pack: Callable[[], None] | None,
    ) -> None:
        self._storage = storage
        self._key = index_encryption_key
        self._before_first_pack = before_first_pack
        self._queue: queue.Queue[tuple[bytes, bytes] | None] = queue.Queue(_UPLOAD_QUEUE_RECORDS)
        self._entries: list[IndexEntry] = []
        self._error: BaseException | None = None
        self._abandoned = False
        self._ended = False
        self.packs = 0
        self._thread = threading.Thread(target=self._run, name="pack upload", daemon=True)
        self._thread.start()

    def put(self, chunk_id: bytes, record: bytes) -> None:
        self._raise_error()
        self._queue.put((chunk_id, record))

    def close(self) -> list[IndexEntry]:
        """Finish the last pack; return every record's index entry. Raises its error."""
        self._queue.put(None)
        self._thread.join()
        self._raise_error()
        return self._entries

    def abandon(self) -> None:
        self._abandoned = True
        self._queue.put(None)
        self._thread.join()

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        try:
            while self._write_pack():
                pass
        except BaseException as exc:  # handed to the caller's next put or close
            self._error = exc
            while not self._ended:  # never leave the caller blocked on a full queue
                self._next()

    def _next(self) -> tuple[bytes, bytes] | None:
        item = self._queue.get()
        if item is None:
            self._ended = True
        return item

    def _write_pack(self) -> bool:
        """Write one pack of the records queued; False once the queue ended."""
        item = self._next()
        if item is None or self._abandoned:
            return False
        if self._before_first_pack is not None:
            # The run's data key record exists before any pack that needs it;
            # a run that adds nothing writes none.
            self._before_first_pack()
            self._before_first_pack = None
        pack_id = new_pack_id()
        more = True
        with self._storage.open_write(pack_key(pack_id)) as out:
            pack = PackWriter(out, pack_id, self._key)
            while item is not None:
                chunk_id, record = item
                placed = pack.add_record(chunk_id, record)
                self._entries.append(
                    IndexEntry(
                        chunk_id, pack_id, placed.offset, placed.length, record_key_id(record)
                    )
                )
                if pack.size >= TARGET_PACK_SIZE:
                    break
                item = self._next()
            else:
                more = False
            if self._abandoned:
                raise _Abandoned  # leaves the pack uncommitted
            pack.finish()
        self.packs += 1
        failpoint("pack-written")
        return more


class _Abandoned(Exception):
    """Raised inside a pack's write to discard it."""


class _BufferSink:
    def __init__(self, buffer: bytearray) -> None:
        self._buffer = buffer

    def write(self, data: bytes) -> int:
        self._buffer += data
        return len(data)


@dataclass
class ReclaimReport:
    deleted_packs: int = 0
    rewritten_packs: int = 0
    freed_bytes: int = 0
    dropped_chunks: int = 0


@dataclass
class _PackUse:
    size: int = 0
    live: list[IndexEntry] = field(default_factory=list)
    live_bytes: int = 0
    dead_bytes: int = 0


def plan_reclaim(
    index: ChunkIndex, pack_sizes: dict[bytes, int], referenced: set[bytes]
) -> ReclaimReport:
    """What reclaiming would do, without doing it (for the plan)."""
    uses = _pack_uses(index, pack_sizes, referenced)
    report = ReclaimReport()
    for use in uses.values():
        if not use.live:
            report.deleted_packs += 1
            report.freed_bytes += use.size
        elif use.live_bytes < REPACK_BELOW * use.size:
            report.rewritten_packs += 1
            report.freed_bytes += use.size - use.live_bytes
    report.dropped_chunks = sum(1 for e in index.entries() if e.chunk_id not in referenced)
    return report


def _pack_uses(
    index: ChunkIndex, pack_sizes: dict[bytes, int], referenced: set[bytes]
) -> dict[bytes, _PackUse]:
    uses = {pack_id: _PackUse(size=size) for pack_id, size in pack_sizes.items()}
    for entry in index.entries():
        use = uses.get(entry.pack_id)
        if use is None:
            continue  # indexed but missing: verify reports it; nothing to reclaim
        if entry.chunk_id in referenced:
            use.live.append(entry)
            use.live_bytes += entry.length
        else:
            use.dead_bytes += entry.length
    return uses


def pack_sizes(storage: Storage) -> dict[bytes, int]:
    """Every pack on the storage and its size."""
    sizes: dict[bytes, int] = {}
    for entry in storage.list_dir(PACKS_DIR):
        name = entry.name
        if entry.is_dir or not name.endswith(PACK_SUFFIX):
            continue
        try:
            pack_id = bytes.fromhex(name[: -len(PACK_SUFFIX)])
        except ValueError:
            continue  # not ours: never touched
        sizes[pack_id] = storage.size(f"{PACKS_DIR}/{name}")
    return sizes


def reclaim(
    storage: Storage,
    where: Callable[[str], str],
    keys: DerivedKeys,
    referenced: set[bytes],
) -> ReclaimReport:
    """Drop every chunk not in ``referenced``; delete packs left empty and rewrite
    mostly empty ones. Must run under the writer lock (no backup in progress)."""
    index = ChunkIndex(storage, where, keys)
    sizes = pack_sizes(storage)
    uses = _pack_uses(index, sizes, referenced)
    report = ReclaimReport()
    live: list[IndexEntry] = []
    doomed: list[bytes] = []
    to_rewrite: list[_PackUse] = []
    for pack_id, use in uses.items():
        if not use.live:
            doomed.append(pack_id)
            report.deleted_packs += 1
            report.freed_bytes += use.size
        elif use.live_bytes < REPACK_BELOW * use.size:
            to_rewrite.append(use)
            doomed.append(pack_id)
            report.rewritten_packs += 1
            report.freed_bytes += use.size - use.live_bytes
        else:
            live.extend(use.live)
    if to_rewrite:
        live.extend(_rewrite(storage, keys, to_rewrite))
    report.dropped_chunks = sum(1 for e in index.entries() if e.chunk_id not in referenced)
    _switch_index(storage, index, keys, live)
    failpoint("reclaim-index-switched")
    for pack_id in doomed:
        storage.delete(pack_key(pack_id))
    _delete_unused_data_keys(storage, {entry.key_id for entry in live})
    _delete_temporaries(storage)
    return report


def _delete_temporaries(storage: Storage) -> None:
    """Delete what writes killed half way left in the chunk store's folders (a pack
    cut short by kill -9): under the lock, nobody is writing them."""
    for folder in (PACKS_DIR, DELTAS_DIR, SHARDS_DIR, DATA_KEYS_DIR):
        for entry in storage.list_dir(folder):
            if not entry.is_dir and is_temporary(entry.name):
                storage.delete(f"{folder}/{entry.name}")


def _delete_unused_data_keys(storage: Storage, used: set[bytes]) -> None:
    """Delete the data key records no indexed record is under any more."""
    for entry in storage.list_dir(DATA_KEYS_DIR):
        name = entry.name.removesuffix(".json")
        try:
            key_id = bytes.fromhex(name)
        except ValueError:
            continue  # not ours (or a temporary): never touched
        if entry.name.endswith(".json") and len(key_id) == 16 and key_id not in used:
            storage.delete(f"{DATA_KEYS_DIR}/{entry.name}")


def _rewrite(storage: Storage, keys: DerivedKeys, uses: list[_PackUse]) -> list[IndexEntry]:
    """Copy the live records of ``uses``' packs, byte for byte, into new packs."""
    moved: list[IndexEntry] = []
    pack: PackWriter | None = None
    buffer = bytearray()
    pack_id = b""

    def flush() -> None:
        nonlocal pack
        if pack is not None:
            pack.finish()
            storage.write_atomic(pack_key(pack_id), bytes(buffer))
            pack = None

    for use in uses:
        for entry in use.live:
            record = storage.read_range(pack_key(entry.pack_id), entry.offset, entry.length)
            if pack is None:
                pack_id = new_pack_id()
                buffer = bytearray()
                pack = PackWriter(_BufferSink(buffer), pack_id, keys.index_encryption_key)
            placed = pack.add_record(entry.chunk_id, record)
            moved.append(
                IndexEntry(entry.chunk_id, pack_id, placed.offset, placed.length, entry.key_id)
            )
            if pack.size >= TARGET_PACK_SIZE:
                flush()
    flush()
    return moved


def _switch_index(
    storage: Storage, index: ChunkIndex, keys: DerivedKeys, entries: list[IndexEntry]
) -> None:
    """Make ``entries`` the whole index: new shards, the pointer, then the old runs go."""
    old = index.pointer
    generation = old.generation + 1
    bits = shard_bits_for(len(entries))
    by_shard: list[list[IndexEntry]] = [[] for _ in range(1 << bits)]
    for entry in entries:
        by_shard[prefix_of(entry.chunk_id, bits)].append(entry)
    names = []
    for number, shard_entries in enumerate(by_shard):
        name = f"{generation:08d}-{bits:02d}-{number:05d}{RUN_SUFFIX}"
        storage.write_atomic(
            f"{SHARDS_DIR}/{name}", seal_run(shard_entries, bits, number, keys.index_encryption_key)
        )
        names.append(name)
    failpoint("reclaim-shards-written")  # the new shards exist, nothing points to them
    # The deltas an interrupted reclaim folded in but did not delete stay
    # named: unnamed, they would be read again, pointing to deleted packs.
    folded = (*index.folded_names, *index.delta_names)
    pointer = IndexPointer(generation, bits, tuple(names), folded)
    storage.write_atomic(INDEX_POINTER, pointer.to_json())
    failpoint("reclaim-pointer-written")
    for name in folded:
        storage.delete(f"{DELTAS_DIR}/{name}")
    current = set(names)
    for name in _run_names(storage, SHARDS_DIR):
        if name not in current:
            storage.delete(f"{SHARDS_DIR}/{name}")


def check_pack(
    storage: Storage, where: Callable[[str], str], keys: DerivedKeys, pack_id: bytes
) -> tuple[list[PackEntry], set[bytes]]:
    """A pack's entries, read with the index key only, and the ids of the chunks
    whose stored bytes do not hash as its trailer records (the whole pack is read).

    Raises ObjectNotFoundError, IntegrityError naming the pack (its trailer)."""
    key = pack_key(pack_id)
    entries = read_trailer(where(key), _RangeOf(storage, key), keys.index_encryption_key, pack_id)
    with storage.open_read(key) as reader:
        return entries, damaged_records(reader, entries)


class _RangeOf:
    def __init__(self, storage: Storage, key: str) -> None:
        self._storage = storage
        self._key = key

    def size(self) -> int:
        return self._storage.size(self._key)

    def read_range(self, offset: int, length: int, /) -> bytes:
        return self._storage.read_range(self._key, offset, length)


def new_run_name(backup_id: str) -> str:
    """A delta's name: the backup it belongs to and a random tail (a retried run differs)."""
    return f"{backup_id}-{os.urandom(4).hex()}"
