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
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from reconciler.dedup.index import IndexEntry, IndexRun, open_run, seal_run, shard_bits_for
from reconciler.dedup.keys import DerivedKeys
from reconciler.dedup.pack import (
    TARGET_PACK_SIZE,
    PackEntry,
    PackWriter,
    damaged_records,
    new_pack_id,
    read_trailer,
)
from reconciler.errors import IntegrityError, ObjectNotFoundError
from reconciler.failpoints import failpoint
from reconciler.storage.base import Storage

PACKS_DIR = "packs"
INDEX_POINTER = "index/index.json"
SHARDS_DIR = "index/shards"
DELTAS_DIR = "index/deltas"
RECLAIM_DUE = "index/reclaim-due.json"
"""Present from the start of a prune until the reclaim after it has finished."""
_PACK_SUFFIX = ".pack"
_RUN_SUFFIX = ".idx"

REPACK_BELOW = 0.5
"""A pack whose live records fill less than this share of it is rewritten by reclaim."""


def pack_key(pack_id: bytes) -> str:
    return f"{PACKS_DIR}/{pack_id.hex()}{_PACK_SUFFIX}"


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

    def lookup(self, chunk_id: bytes) -> IndexEntry | None:
        if self.pointer.shards:
            number = int.from_bytes(chunk_id[:4], "big") >> (32 - self.pointer.bits)
            found = self._shard(number).lookup(chunk_id)
            if found is not None:
                return found
        for delta in self._deltas:
            found = delta.lookup(chunk_id)
            if found is not None:
                return found
        return None

    def entries(self) -> Iterator[IndexEntry]:
        """Every entry, an id once (shards first, then deltas, oldest first)."""
        seen: set[bytes] = set()
        runs: Iterable[IndexRun] = (
            *(self._shard(n) for n in range(len(self.pointer.shards))),
            *self._deltas,
        )
        for run in runs:
            for entry in run.entries():
                if entry.chunk_id not in seen:
                    seen.add(entry.chunk_id)
                    yield entry


def read_pointer(storage: Storage, where: Callable[[str], str]) -> IndexPointer:
    try:
        raw = storage.read(INDEX_POINTER)
    except ObjectNotFoundError:
        return IndexPointer()
    return IndexPointer.from_json(raw, where(INDEX_POINTER))


def _run_names(storage: Storage, folder: str) -> list[str]:
    return [e.name for e in storage.list_dir(folder) if e.name.endswith(_RUN_SUFFIX)]


@dataclass
class RunStats:
    """What one run stored: new chunks and their stored bytes."""

    new_chunks: int = 0
    new_bytes: int = 0
    packs: int = 0


class ChunkWriter:
    """One backup run's new chunks: records go into packs, entries into its delta.

    ``finish`` writes the last pack and the delta; until then nothing this run
    stored is indexed, and a crash leaves packs that reclaim removes."""

    def __init__(self, storage: Storage, index: ChunkIndex, keys: DerivedKeys, name: str) -> None:
        self._storage = storage
        self._index = index
        self._keys = keys
        self._name = name
        self._new: dict[bytes, IndexEntry] = {}
        self._pack: PackWriter | None = None
        self._pack_id = b""
        self._buffer = bytearray()
        self.stats = RunStats()

    def stored_length(self, chunk_id: bytes) -> int | None:
        """The stored (record) length of a chunk already in the repository, else None."""
        entry = self._new.get(chunk_id) or self._index.lookup(chunk_id)
        return None if entry is None else entry.length

    def add(self, chunk_id: bytes, record: bytes) -> int:
        """Store one sealed record (``pack.seal_record``); returns its stored length."""
        known = self._new.get(chunk_id)
        if known is not None:
            return known.length
        if self._pack is None:
            self._pack_id = new_pack_id()
            self._buffer = bytearray()
            self._pack = PackWriter(_BufferSink(self._buffer), self._pack_id, self._index_key)
        entry = self._pack.add_record(chunk_id, record)
        self._new[chunk_id] = IndexEntry(chunk_id, self._pack_id, entry.offset, entry.length)
        self.stats.new_chunks += 1
        self.stats.new_bytes += entry.length
        if self._pack.size >= TARGET_PACK_SIZE:
            self._flush_pack()
        return entry.length

    @property
    def _index_key(self) -> bytes:
        return self._keys.index_encryption_key

    def _flush_pack(self) -> None:
        if self._pack is None:
            return
        self._pack.finish()
        self._storage.write_atomic(pack_key(self._pack_id), bytes(self._buffer))
        self.stats.packs += 1
        self._pack = None
        self._buffer = bytearray()
        failpoint("pack-written")

    def finish(self) -> None:
        """Write the last pack and the run's delta: from now on its chunks are indexed."""
        self._flush_pack()
        if self._new:
            body = seal_run(self._new.values(), 0, 0, self._index_key)
            self._storage.write_atomic(f"{DELTAS_DIR}/{self._name}{_RUN_SUFFIX}", body)


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
        if entry.is_dir or not name.endswith(_PACK_SUFFIX):
            continue
        try:
            pack_id = bytes.fromhex(name[: -len(_PACK_SUFFIX)])
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
    return report


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
            moved.append(IndexEntry(entry.chunk_id, pack_id, placed.offset, placed.length))
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
        by_shard[int.from_bytes(entry.chunk_id[:4], "big") >> (32 - bits) if bits else 0].append(
            entry
        )
    names = []
    for number, shard_entries in enumerate(by_shard):
        name = f"{generation:08d}-{bits:02d}-{number:05d}{_RUN_SUFFIX}"
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
