"""The chunk index: chunk id -> (pack id, record offset, record length, key id), in sorted runs.

An entry is 72 bytes (id 32, pack id 16, offset 4, length 4, key id 16); the
key id says which run's data key the record is under without reading it, so a
backup host can keep a backup restorable with its own certificate's key (see
``repository/chunkstore.py``). A run is one
object holding the sorted entries whose ids start with the same ``bits``
bits, equal to its ``number``; a run of 0 bits may hold any id. Each backup
run writes its new entries as one delta run (0 bits); compaction folds the
deltas into shards, the runs of ``shard_bits_for(total)`` bits covering every
prefix::

    header   magic b"BKCTLIDX" | version (1 byte, 2) | prefix bits (1 byte)
             | prefix number (2 bytes BE) | entry count (4 bytes BE)
             | key check (8 bytes) | salt (16 bytes)
    body     AES-256-GCM(entry*, sorted by id) and tag

The body is encrypted under a key derived from the index-encryption key and
the run's own random salt, with the header as associated data (so a run
cannot be given another prefix or count); the key check is a value derived
from the index-encryption key, so a wrong key is told apart from damage. A
decrypted run stays one ``bytes`` object: a lookup is a binary search over
its fixed-size records, no Python object per entry.

How it scales: shards hold at most 65,536 entries (4.5 MB) until 12 bits, so
a small repository is one shard, and 10 TB in chunks of about 1.25 MiB (8-10
million chunks, 720 MB of index) is 256 shards of about 2.8 MB. A lookup reads
one shard and the deltas since the last compaction; compaction streams: the
old shards in number order are one sorted stream, merged with the deltas and
cut into new shards, one at a time.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import os
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from blake3 import blake3
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from reconciler.dedup.chunk_id import CHUNK_ID_BYTES
from reconciler.dedup.pack import PACK_ID_BYTES, short_id
from reconciler.errors import CryptoError, IntegrityError

MAGIC = b"BKCTLIDX"
FORMAT_VERSION = 2
MAX_BITS = 16
"""The prefix number is a 2-byte field."""
SHARD_ENTRIES = 1 << 16
"""65,536 entries (4.5 MB) a shard before the shard count doubles: one object
while a repository is small, and a lookup never reads more than a few MB."""
MAX_SHARD_BITS = 12
"""4096 shards at most: past 268 million entries, shards grow instead of the
object count, which is the cost on SMB and Azure."""
MAX_RUN_ENTRIES = 1 << 26
"""67 million entries (3.8 GB) in one run is far beyond a whole 10 TB
repository in a delta: a damaged count can never make a reader allocate more."""
SALT_BYTES = 16
KEY_CHECK_BYTES = 8
TAG_BYTES = 16
NONCE = bytes(12)  # each run object has its own derived key

_HEADER = struct.Struct(">8sBBHI8s16s")
HEADER_BYTES = _HEADER.size
_ENTRY = struct.Struct(">32s16sII16s")
ENTRY_BYTES = _ENTRY.size
_RUN_KEY_CONTEXT = "backupctl 2026 dedup index shard v1"
_KEY_CHECK_CONTEXT = "backupctl 2026 dedup index key check v1"


@dataclass(frozen=True)
class IndexEntry:
    """Where one chunk is stored."""

    chunk_id: bytes
    pack_id: bytes
    offset: int
    length: int
    key_id: bytes = bytes(16)
    """The data key the record is under (its first 16 bytes)."""

    def pack(self) -> bytes:
        """Return the 72-byte record of this entry.

        Raises ValueError for malformed fields (a caller's bug)."""
        if (
            len(self.chunk_id) != CHUNK_ID_BYTES
            or len(self.pack_id) != PACK_ID_BYTES
            or len(self.key_id) != PACK_ID_BYTES
        ):
            raise ValueError("an index entry has a malformed chunk id, pack id or key id")
        try:
            return _ENTRY.pack(self.chunk_id, self.pack_id, self.offset, self.length, self.key_id)
        except struct.error as exc:
            raise ValueError("an index entry's offset or length is not a 4-byte number") from exc

    @classmethod
    def unpack(cls, record: bytes) -> IndexEntry:
        """Return the entry of a 72-byte record."""
        return cls(*_ENTRY.unpack(record))


def prefix_of(chunk_id: bytes, bits: int) -> int:
    """Return the first ``bits`` bits of ``chunk_id`` as a number (0 for 0 bits)."""
    return int.from_bytes(chunk_id[:2], "big") >> (16 - bits) if bits else 0


def shard_bits_for(entry_count: int) -> int:
    """Return the prefix bits of the shards of an index of ``entry_count`` entries.

    0 up to SHARD_ENTRIES, then ceil(log2(count / SHARD_ENTRIES)), at most
    MAX_SHARD_BITS."""
    bits = 0
    while SHARD_ENTRIES << bits < entry_count and bits < MAX_SHARD_BITS:
        bits += 1
    return bits


class _Ids:
    """The ids of a run's body, as a sequence ``bisect`` can search."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def __len__(self) -> int:
        return len(self._body) // ENTRY_BYTES

    def __getitem__(self, i: int) -> bytes:
        at = i * ENTRY_BYTES
        return self._body[at : at + CHUNK_ID_BYTES]


@dataclass(frozen=True)
class IndexRun:
    """One decrypted run: its prefix and its sorted 72-byte records.

    Build one with ``seal_run``/``open_run``, ``split_into_shards`` or
    ``IndexRun.of``; the constructor trusts ``body``."""

    bits: int
    number: int
    body: bytes

    @classmethod
    def of(cls, entries: Iterable[IndexEntry], bits: int = 0, number: int = 0) -> IndexRun:
        """Return the run of ``entries``, sorted.

        Raises ValueError for two entries of one id and key id, an id outside
        the prefix, a bad prefix or a malformed entry (a caller's bug)."""
        _check_prefix(bits, number)
        records = sorted(e.pack() for e in entries)
        for previous, current in itertools.pairwise(records):
            if _identity(previous) == _identity(current):
                raise ValueError(f"chunk {short_id(current)} is twice in one index run")
        for record in records:
            if prefix_of(record, bits) != number:
                raise ValueError(f"chunk {short_id(record)} is outside run {bits}-{number}")
        return cls(bits, number, b"".join(records))

    def __len__(self) -> int:
        return len(self.body) // ENTRY_BYTES

    def covers(self, chunk_id: bytes) -> bool:
        """Return whether ``chunk_id`` has this run's prefix (whether it would be here)."""
        return prefix_of(chunk_id, self.bits) == self.number

    def lookup(self, chunk_id: bytes) -> IndexEntry | None:
        """Return the (first) entry of ``chunk_id``, or None if this run does not hold it."""
        i = bisect.bisect_left(_Ids(self.body), chunk_id)
        at = i * ENTRY_BYTES
        if self.body[at : at + CHUNK_ID_BYTES] != chunk_id:
            return None
        return IndexEntry(*_ENTRY.unpack_from(self.body, at))

    def lookup_all(self, chunk_id: bytes) -> list[IndexEntry]:
        """Every entry of ``chunk_id``: one per data key it is stored under (a
        chunk is stored again under a new certificate's key until key.rewrap)."""
        at = bisect.bisect_left(_Ids(self.body), chunk_id) * ENTRY_BYTES
        found = []
        while self.body[at : at + CHUNK_ID_BYTES] == chunk_id:
            found.append(IndexEntry(*_ENTRY.unpack_from(self.body, at)))
            at += ENTRY_BYTES
        return found

    def records(self) -> Iterator[bytes]:
        """Yield the 72-byte records in id order (what ``merge_records`` takes)."""
        body = self.body
        for at in range(0, len(body), ENTRY_BYTES):
            yield body[at : at + ENTRY_BYTES]

    def entries(self) -> Iterator[IndexEntry]:
        """Yield the entries in id order."""
        for fields in _ENTRY.iter_unpack(self.body):
            yield IndexEntry(*fields)

    def seal(self, index_encryption_key: bytes) -> bytes:
        """Return the stored form of this run, encrypted under the index-encryption key."""
        salt = os.urandom(SALT_BYTES)
        header = _HEADER.pack(
            MAGIC,
            FORMAT_VERSION,
            self.bits,
            self.number,
            len(self),
            _key_check(index_encryption_key),
            salt,
        )
        aead = AESGCM(_run_key(index_encryption_key, salt))
        return header + aead.encrypt(NONCE, self.body, header)


def seal_run(
    entries: Iterable[IndexEntry], bits: int, number: int, index_encryption_key: bytes
) -> bytes:
    """Return the stored run of ``entries`` (sorted here), prefix ``bits`` and ``number``.

    Raises ValueError for two entries of one id, an id outside the prefix, a
    bad prefix or a malformed entry (a caller's bug)."""
    return IndexRun.of(entries, bits, number).seal(index_encryption_key)


def open_run(name: str, data: bytes, index_encryption_key: bytes) -> IndexRun:
    """Decrypt and check the stored run ``data``; ``name`` names the object in messages.

    Raises CryptoError if it was written under another index key, and
    IntegrityError if it is damaged or truncated. The caller compares the
    run's ``bits`` and ``number`` with what the object's name promises."""
    if len(data) < HEADER_BYTES + TAG_BYTES:
        raise IntegrityError(f"Index run {name} is truncated.")
    magic, version, bits, number, count, check, salt = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise IntegrityError(f"Index run {name} is not a backupctl index run.")
    if version != FORMAT_VERSION:
        raise IntegrityError(
            f"Index run {name} has format version {version}, not {FORMAT_VERSION}."
        )
    if bits > MAX_BITS or number >> bits:
        raise IntegrityError(f"Index run {name} has an impossible prefix {bits}-{number}.")
    if count > MAX_RUN_ENTRIES or len(data) != HEADER_BYTES + count * ENTRY_BYTES + TAG_BYTES:
        raise IntegrityError(f"Index run {name} is truncated or damaged.")
    if check != _key_check(index_encryption_key):
        raise CryptoError(
            f"Index run {name} was written under another index key (wrong index key)."
        )
    try:
        body = AESGCM(_run_key(index_encryption_key, salt)).decrypt(
            NONCE, data[HEADER_BYTES:], data[:HEADER_BYTES]
        )
    except InvalidTag as exc:
        raise IntegrityError(f"Index run {name} is damaged (it fails authentication).") from exc
    return _checked(name, IndexRun(bits, number, body))


def merge_records(runs: Sequence[Iterable[bytes]]) -> Iterator[bytes]:
    """Yield the 72-byte records of several sorted runs as one sorted stream.

    An id under one key id in more than one run keeps the record of the first
    run given (put the run whose entries win first); the same id under
    different key ids keeps one record each. Streams: holds one record of
    each run, and the records of the id being merged."""
    tagged = [_tagged(i, run) for i, run in enumerate(runs)]
    current = b""
    seen: set[bytes] = set()
    pending: list[bytes] = []
    for chunk_id, _, record in heapq.merge(*tagged):
        if chunk_id != current:
            yield from sorted(pending)
            current, seen, pending = chunk_id, set(), []
        if _identity(record) not in seen:
            seen.add(_identity(record))
            pending.append(record)
    yield from sorted(pending)


def _identity(record: bytes) -> bytes:
    """What makes a record distinct: its chunk id and its key id."""
    return record[:CHUNK_ID_BYTES] + record[-16:]


def _tagged(rank: int, run: Iterable[bytes]) -> Iterator[tuple[bytes, int, bytes]]:
    # The rank breaks ties between runs, so the first run's record comes first.
    for record in run:
        yield record[:CHUNK_ID_BYTES], rank, record


def split_into_shards(records: Iterable[bytes], bits: int) -> Iterator[IndexRun]:
    """Cut a sorted stream of distinct records into the ``2**bits`` runs of ``bits`` bits.

    Yields every number in order, empty runs too, so the result covers every
    id; holds one run at a time. Raises ValueError if the stream is not
    sorted or repeats an id (a caller's bug)."""
    _check_prefix(bits, 0)
    number = 0
    pieces: list[bytes] = []
    previous = b""
    for record in records:
        if record[:CHUNK_ID_BYTES] < previous[:CHUNK_ID_BYTES] or _identity(record) == _identity(
            previous
        ):
            raise ValueError(f"chunk {short_id(record)} is out of order or repeated")
        previous = bytes(record)
        prefix = prefix_of(record, bits)
        while number < prefix:
            yield IndexRun(bits, number, b"".join(pieces))
            pieces = []
            number += 1
        pieces.append(bytes(record))
    while number < 1 << bits:
        yield IndexRun(bits, number, b"".join(pieces))
        pieces = []
        number += 1


def _check_prefix(bits: int, number: int) -> None:
    if not 0 <= bits <= MAX_BITS or not 0 <= number < 1 << bits:
        raise ValueError(f"no run prefix has {bits} bits and number {number}")


def _checked(name: str, run: IndexRun) -> IndexRun:
    # Authenticated, so only a writer's bug could break these; cheap enough to be sure.
    ids = _Ids(run.body)
    previous = b""
    for i in range(len(ids)):
        current = ids[i]
        if current <= previous or not run.covers(current):
            raise IntegrityError(f"Index run {name} is not sorted or holds ids outside its prefix.")
        previous = current
    return run


def _run_key(index_encryption_key: bytes, salt: bytes) -> bytes:
    # A fresh key per run object: runs are rewritten for as long as the
    # repository lives, more often than random nonces under one key allow.
    return blake3(index_encryption_key + salt, derive_key_context=_RUN_KEY_CONTEXT).digest()


def _key_check(index_encryption_key: bytes) -> bytes:
    return blake3(index_encryption_key, derive_key_context=_KEY_CHECK_CONTEXT).digest(
        length=KEY_CHECK_BYTES
    )
