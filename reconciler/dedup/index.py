"""The chunk index: chunk id -> (pack id, record offset, record length), in shards.

An entry is 56 bytes (id 32, pack id 16, offset 4, length 4). Entries are
grouped into 4096 shards by the first 12 bits of the id (ids are keyed
hashes, so the shards fill evenly), and a shard is one object::

    header   magic b"BKCTLIDX" | version (1 byte, 1) | shard bits (1 byte, 12)
             | shard number (2 bytes BE) | entry count (4 bytes BE)
             | key check (8 bytes) | salt (16 bytes)
    body     AES-256-GCM(entry*, sorted by id) and tag

The body is encrypted under a key derived from the index-encryption key and
the shard's own random salt, with the header as associated data (so a shard
cannot be renamed to another number or have its count changed); the key check
is a value derived from the index-encryption key, so a wrong key is told apart
from damage. A decrypted shard stays one ``bytes`` object: a lookup is a
binary search over its fixed-size records, no Python object per entry.

How it scales: 10 TB in chunks of about 1.25 MiB is about 8-10 million chunks,
so 10 M x 56 bytes = 560 MB of index in all, about 2,400 entries or 137 KB a
shard. A host looking up an id reads and decrypts one shard (137 KB); a backup
that adds new chunks rewrites only the shards they fall in (for a backup of a
few thousand new chunks that is most shards, 4096 x 137 KB = 560 MB at 10 TB:
the later repository wiring may keep per-backup delta shards and merge them
periodically instead; the shard format serves both). A backup that needs to
know every id (a host with no cache) reads the whole index shard by shard,
never holding more than one shard decrypted.
"""

from __future__ import annotations

import bisect
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from blake3 import blake3
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from reconciler.dedup.chunk_id import CHUNK_ID_BYTES
from reconciler.dedup.pack import PACK_ID_BYTES
from reconciler.errors import CryptoError, IntegrityError

MAGIC = b"BKCTLIDX"
FORMAT_VERSION = 1
SHARD_BITS = 12
SHARD_COUNT = 1 << SHARD_BITS
"""4096: about 137 KB a shard at 10 million chunks; 256 would make 2.2 MB
shards that every small backup rewrites, 65536 would make the object count
itself the cost on SMB and Azure for small repositories."""
MAX_SHARD_ENTRIES = 1 << 22
"""4 million entries (230 MB) in one shard is 16 billion chunks in all: a
damaged count can never make a reader allocate more."""
SALT_BYTES = 16
KEY_CHECK_BYTES = 8
TAG_BYTES = 16
NONCE = bytes(12)  # each shard object has its own derived key

_HEADER = struct.Struct(">8sBBHI8s16s")
HEADER_BYTES = _HEADER.size
_ENTRY = struct.Struct(">32s16sII")
ENTRY_BYTES = _ENTRY.size
_SHARD_KEY_CONTEXT = "backupctl 2026 dedup index shard v1"
_KEY_CHECK_CONTEXT = "backupctl 2026 dedup index key check v1"


@dataclass(frozen=True)
class IndexEntry:
    """Where one chunk is stored."""

    chunk_id: bytes
    pack_id: bytes
    offset: int
    length: int

    def pack(self) -> bytes:
        """Return the 56-byte record of this entry."""
        return _ENTRY.pack(self.chunk_id, self.pack_id, self.offset, self.length)


def shard_of(chunk_id: bytes) -> int:
    """Return the number of the shard holding ``chunk_id`` (its first 12 bits)."""
    return int.from_bytes(chunk_id[:2], "big") >> (16 - SHARD_BITS)


def shard_name(number: int) -> str:
    """Return the object name of a shard: three hex digits."""
    return f"{number:03x}"


class _Ids:
    """The ids of a shard's body, as a sequence ``bisect`` can search."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def __len__(self) -> int:
        return len(self._body) // ENTRY_BYTES

    def __getitem__(self, i: int) -> bytes:
        at = i * ENTRY_BYTES
        return self._body[at : at + CHUNK_ID_BYTES]


@dataclass(frozen=True)
class Shard:
    """One decrypted shard: its number and its sorted 56-byte records."""

    number: int
    body: bytes

    @classmethod
    def empty(cls, number: int) -> Shard:
        """Return a shard with no entries."""
        return cls(number, b"")

    def __len__(self) -> int:
        return len(self.body) // ENTRY_BYTES

    def lookup(self, chunk_id: bytes) -> IndexEntry | None:
        """Return the entry of ``chunk_id``, or None if this shard does not hold it."""
        i = bisect.bisect_left(_Ids(self.body), chunk_id)
        at = i * ENTRY_BYTES
        if self.body[at : at + CHUNK_ID_BYTES] != chunk_id:
            return None
        return IndexEntry(*_ENTRY.unpack_from(self.body, at))

    def merge(self, entries: Iterable[IndexEntry]) -> Shard:
        """Return this shard with ``entries`` added.

        An id already present keeps its entry (its data is stored already), and
        of several new entries for one id the first is kept. Raises ValueError
        for an entry of another shard or with malformed fields (a caller's bug)."""
        fresh: dict[bytes, bytes] = {}
        for entry in entries:
            self._check(entry)
            fresh.setdefault(entry.chunk_id, entry.pack())
        ids = _Ids(self.body)
        pieces: list[bytes] = []
        done = 0
        for chunk_id in sorted(fresh):
            i = bisect.bisect_left(ids, chunk_id)
            if ids[i] == chunk_id:
                continue
            pieces += (self.body[done * ENTRY_BYTES : i * ENTRY_BYTES], fresh[chunk_id])
            done = i
        pieces.append(self.body[done * ENTRY_BYTES :])
        return Shard(self.number, b"".join(pieces))

    def _check(self, entry: IndexEntry) -> None:
        if len(entry.chunk_id) != CHUNK_ID_BYTES or len(entry.pack_id) != PACK_ID_BYTES:
            raise ValueError("an index entry has a malformed chunk id or pack id")
        if shard_of(entry.chunk_id) != self.number:
            raise ValueError(f"chunk {entry.chunk_id.hex()} is not in shard {self.number}")

    def seal(self, index_encryption_key: bytes) -> bytes:
        """Return the stored form of this shard, encrypted under the index-encryption key."""
        salt = os.urandom(SALT_BYTES)
        header = _HEADER.pack(
            MAGIC,
            FORMAT_VERSION,
            SHARD_BITS,
            self.number,
            len(self),
            _key_check(index_encryption_key),
            salt,
        )
        aead = AESGCM(_shard_key(index_encryption_key, salt))
        return header + aead.encrypt(NONCE, self.body, header)


def open_shard(name: str, data: bytes, number: int, index_encryption_key: bytes) -> Shard:
    """Decrypt and check the stored shard ``data`` expected to be shard ``number``.

    ``name`` names the object in messages. Raises CryptoError if it was written
    under another index key, IntegrityError if it is damaged, truncated, or
    another shard's."""
    if len(data) < HEADER_BYTES + TAG_BYTES:
        raise IntegrityError(f"Index shard {name} is truncated.")
    magic, version, bits, found, count, check, salt = _HEADER.unpack_from(data)
    if magic != MAGIC or version != FORMAT_VERSION or bits != SHARD_BITS:
        raise IntegrityError(f"Index shard {name} is not a version {FORMAT_VERSION} index shard.")
    if found != number:
        raise IntegrityError(f"Index shard {name} holds shard {found}, not {number}.")
    if count > MAX_SHARD_ENTRIES or len(data) != HEADER_BYTES + count * ENTRY_BYTES + TAG_BYTES:
        raise IntegrityError(f"Index shard {name} is truncated or damaged.")
    if check != _key_check(index_encryption_key):
        raise CryptoError(f"Index shard {name} was written under another index key.")
    try:
        body = AESGCM(_shard_key(index_encryption_key, salt)).decrypt(
            NONCE, data[HEADER_BYTES:], data[:HEADER_BYTES]
        )
    except InvalidTag as exc:
        raise IntegrityError(f"Index shard {name} is damaged (it fails authentication).") from exc
    return _checked(name, Shard(number, body))


def _checked(name: str, shard: Shard) -> Shard:
    # Authenticated, so only a writer's bug could break these; cheap enough to be sure.
    ids = _Ids(shard.body)
    previous = b""
    for i in range(len(ids)):
        current = ids[i]
        if current <= previous or shard_of(current) != shard.number:
            raise IntegrityError(f"Index shard {name} is not sorted or holds another shard's ids.")
        previous = current
    return shard


def _shard_key(index_encryption_key: bytes, salt: bytes) -> bytes:
    # A fresh key per shard object: shards are rewritten for as long as the
    # repository lives, more often than random nonces under one key allow.
    return blake3(index_encryption_key + salt, derive_key_context=_SHARD_KEY_CONTEXT).digest()


def _key_check(index_encryption_key: bytes) -> bytes:
    return blake3(index_encryption_key, derive_key_context=_KEY_CHECK_CONTEXT).digest(
        length=KEY_CHECK_BYTES
    )
