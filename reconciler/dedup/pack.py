"""The pack format: movable encrypted records in one object, with an index-key trailer.

Layout::

    header   magic b"BKCTLPAK" | version (1 byte, 2) | pack id (16 random bytes)
    record*  key id (16) | nonce (12, random) | AES-256-GCM(zstd(chunk)) and tag
    trailer  salt (16 bytes) | AES-256-GCM(entry*) and tag
    footer   trailer offset (8 bytes BE) | trailer length (4 bytes BE) | b"BKCTLEND"

    entry    chunk id (32 bytes) | record offset (4 bytes BE) | record length (4 bytes BE)
             | BLAKE3 of the record's stored bytes (16 bytes)

A record is sealed on its own, independent of the pack it sits in: it is
encrypted under the data key of the backup run that wrote it (named by the key
id in front), with a random nonce, and its associated data is a fixed label,
the key id and the chunk id. So compaction by a host without the private key
copies records byte for byte into a new pack, while a record moved to another
id's place, or given another key id, fails authentication; the reader also
checks the keyed id of what it decrypted. A run's data key seals one run's new
chunks (millions at most), far below the 2**32 random nonces one AES-GCM key
allows.

The trailer is encrypted under a key derived from the index-encryption key and
its own random salt, with the header, the trailer offset and the entry count as
associated data: a host holding the index key can list what a pack holds (and
rebuild the index from packs) but cannot decrypt a record; the records'
digests let it check, without any key that decrypts, that the stored bytes
are the ones written (``verify_records``). The footer is plain,
but every value in it is checked.
"""

from __future__ import annotations

import os
import struct
import threading
from dataclasses import dataclass
from typing import Protocol

import zstandard
from blake3 import blake3
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from reconciler.dedup.chunk_id import CHUNK_ID_BYTES
from reconciler.dedup.chunk_id import chunk_id as keyed_id
from reconciler.dedup.chunker import MAX_SIZE
from reconciler.errors import IntegrityError
from reconciler.streams import ByteSink, ByteSource

MAGIC = b"BKCTLPAK"
END_MAGIC = b"BKCTLEND"
FORMAT_VERSION = 2
PACK_ID_BYTES = 16
KEY_ID_BYTES = 16
NONCE_BYTES = 12
TAG_BYTES = 16
SALT_BYTES = 16
DATA_KEY_BYTES = 32

TARGET_PACK_SIZE = 32 << 20
"""A writer's caller starts a new pack past this: tens of MiB keeps the number
of objects low (300,000 for 10 TB) while a restore of one file reads little."""
MAX_PACK_SIZE = 1 << 31
"""Offsets and lengths are 4-byte fields; a reader refuses anything larger."""
RECORD_OVERHEAD = KEY_ID_BYTES + NONCE_BYTES + TAG_BYTES
MIN_RECORD_BYTES = RECORD_OVERHEAD + 9
"""The smallest zstd frame (of an empty chunk, with its content size) is 9 bytes."""
MAX_RECORD_BYTES = MAX_SIZE + MAX_SIZE // 64 + 1024 + RECORD_OVERHEAD
"""zstd's worst case for a maximum-size chunk, plus key id, nonce and tag: a
damaged length can never make a reader allocate more than this."""
MAX_ENTRIES = MAX_PACK_SIZE // MIN_RECORD_BYTES
MAX_RECORDS_BYTES = MAX_PACK_SIZE // 2
"""A trailer entry (40 bytes) is smaller than any record, so with at most half
the limit in records the whole pack stays below MAX_PACK_SIZE."""
ZSTD_LEVEL = 3
"""zstd's default: about 300 MB/s a core, most of what higher levels gain."""
SHORT_ID_HEX = 16
"""Hex digits of a chunk id in messages: enough to find it, short enough to read."""

_HEADER = struct.Struct(">8sB16s")
HEADER_BYTES = _HEADER.size
_FOOTER = struct.Struct(">QI8s")
FOOTER_BYTES = _FOOTER.size
_ENTRY = struct.Struct(">32sII16s")
RECORD_DIGEST_BYTES = 16
ENTRY_BYTES = _ENTRY.size
_RECORD_AAD = b"backupctl pack record v2"
_TRAILER_KEY_CONTEXT = "backupctl 2026 dedup pack trailer v1"
_TRAILER_AAD = b"backupctl pack trailer v2"

# zstd contexts are not thread-safe, and making one per record costs more than
# compressing a small chunk: each worker thread keeps its own.
_local = threading.local()


class RangeSource(Protocol):
    """A stored pack read by byte ranges (a file, a storage object)."""

    def size(self) -> int: ...

    def read_range(self, offset: int, length: int, /) -> bytes: ...


@dataclass(frozen=True)
class PackEntry:
    """Where one chunk's record is in its pack."""

    chunk_id: bytes
    offset: int
    length: int
    digest: bytes = b""
    """BLAKE3 of the record's stored bytes (16 bytes), as the trailer records it."""


def new_pack_id() -> bytes:
    """Return a new random pack id; its hex form is the pack's name."""
    return os.urandom(PACK_ID_BYTES)


def short_id(chunk_id: bytes) -> str:
    """Return the shortened hex form of a chunk id used in messages."""
    return chunk_id.hex()[:SHORT_ID_HEX]


def seal_record(
    chunk_id: bytes, plaintext: bytes | memoryview, key_id: bytes, data_key: bytes
) -> bytes:
    """Return the record of one chunk: zstd level 3, then AES-256-GCM under ``data_key``.

    Pure and thread-safe. Raises ValueError for a malformed id, key id or key,
    or a chunk larger than the chunker's maximum (a caller's bug, not bad data)."""
    if len(chunk_id) != CHUNK_ID_BYTES:
        raise ValueError(f"a chunk id is {CHUNK_ID_BYTES} bytes, not {len(chunk_id)}")
    if len(key_id) != KEY_ID_BYTES or len(data_key) != DATA_KEY_BYTES:
        raise ValueError(f"a key id is {KEY_ID_BYTES} bytes and a data key {DATA_KEY_BYTES}")
    if len(plaintext) > MAX_SIZE:
        raise ValueError(f"a chunk of {len(plaintext)} bytes is above {MAX_SIZE}")
    nonce = os.urandom(NONCE_BYTES)
    compressed = _compressor().compress(plaintext)
    sealed = AESGCM(data_key).encrypt(nonce, compressed, _record_aad(key_id, chunk_id))
    return key_id + nonce + sealed


def record_key_id(record: bytes) -> bytes:
    """Return the key id of the data key ``record`` is sealed under.

    Raises ValueError for bytes too short to be a record."""
    if len(record) < RECORD_OVERHEAD:
        raise ValueError(f"a record is at least {RECORD_OVERHEAD} bytes, not {len(record)}")
    return bytes(record[:KEY_ID_BYTES])


def open_record(name: str, record: bytes, chunk_id: bytes, data_key: bytes, id_key: bytes) -> bytes:
    """Return the plaintext chunk of ``record``, the record of ``chunk_id`` in pack ``name``.

    ``data_key`` is the key its key id names; ``id_key`` the chunk-id key.
    Raises IntegrityError naming the pack and the chunk if the record is cut,
    damaged, another chunk's, or not decryptable with ``data_key``."""
    what = f"chunk {short_id(chunk_id)} in pack {name}"
    if not MIN_RECORD_BYTES <= len(record) <= MAX_RECORD_BYTES:
        raise IntegrityError(f"The {what} has an impossible length {len(record)}.")
    key_id = record[:KEY_ID_BYTES]
    nonce = record[KEY_ID_BYTES : KEY_ID_BYTES + NONCE_BYTES]
    try:
        compressed = AESGCM(data_key).decrypt(
            nonce, record[KEY_ID_BYTES + NONCE_BYTES :], _record_aad(key_id, chunk_id)
        )
        plaintext = _decompress(compressed)
    except (InvalidTag, zstandard.ZstdError) as exc:
        raise IntegrityError(
            f"The {what} fails authentication (damaged, moved, or another data key's)."
        ) from exc
    if keyed_id(id_key, plaintext) != chunk_id:
        raise IntegrityError(f"The {what} does not hold the data its id names.")
    return plaintext


class PackWriter:
    """Writes one pack to ``out``: ``add_record`` each sealed record, then ``finish``.

    Holds no data key: records come sealed (``seal_record``) or copied byte
    for byte from another pack. The index-encryption key comes from
    ``keys.DerivedKeys``."""

    def __init__(self, out: ByteSink, pack_id: bytes, index_encryption_key: bytes) -> None:
        """Write the header. Raises ValueError for a malformed pack id."""
        if len(pack_id) != PACK_ID_BYTES:
            raise ValueError(f"a pack id is {PACK_ID_BYTES} bytes, not {len(pack_id)}")
        self._out = out
        self._index_key = index_encryption_key
        self._header = _HEADER.pack(MAGIC, FORMAT_VERSION, pack_id)
        self._entries: list[bytes] = []
        self._size = 0
        self._finished = False
        self._write(self._header)

    @property
    def size(self) -> int:
        """Bytes written so far (compare with TARGET_PACK_SIZE)."""
        return self._size

    def add_record(self, chunk_id: bytes, record: bytes) -> PackEntry:
        """Append one record; return where it is.

        Raises ValueError for a malformed id or record, a pack that would
        outgrow its 4-byte offsets, or a finished writer (a caller's bug)."""
        if self._finished:
            raise ValueError("add_record after finish")
        if len(chunk_id) != CHUNK_ID_BYTES:
            raise ValueError(f"a chunk id is {CHUNK_ID_BYTES} bytes, not {len(chunk_id)}")
        if not MIN_RECORD_BYTES <= len(record) <= MAX_RECORD_BYTES:
            raise ValueError(f"a record of {len(record)} bytes is not a sealed chunk")
        if self._size + len(record) > MAX_RECORDS_BYTES:
            raise ValueError(f"a pack holds at most {MAX_RECORDS_BYTES} bytes of records")
        digest = blake3(record).digest(RECORD_DIGEST_BYTES)
        entry = PackEntry(bytes(chunk_id), self._size, len(record), digest)
        self._write(record)
        self._entries.append(_ENTRY.pack(entry.chunk_id, entry.offset, entry.length, digest))
        return entry

    def finish(self) -> int:
        """Write the trailer and footer; return the pack's total size."""
        if self._finished:
            raise ValueError("finish called twice")
        self._finished = True
        offset = self._size
        salt = os.urandom(SALT_BYTES)
        aad = _trailer_aad(self._header, offset, len(self._entries))
        sealed = AESGCM(_trailer_key(self._index_key, salt)).encrypt(
            bytes(NONCE_BYTES), b"".join(self._entries), aad
        )
        self._write(salt)
        self._write(sealed)
        self._write(_FOOTER.pack(offset, SALT_BYTES + len(sealed), END_MAGIC))
        return self._size

    def _write(self, data: bytes) -> None:
        self._out.write(data)
        self._size += len(data)


class PackReader:
    """Reads records of one stored pack by range, each checked to lie within it."""

    def __init__(self, name: str, source: RangeSource) -> None:
        """Read and check the header. Raises IntegrityError naming the pack."""
        self._name = name
        self._source = source
        self._size = source.size()
        _read_header(name, source, self._size)

    def read_record(self, entry: PackEntry) -> bytes:
        """Return the record ``entry`` locates (then ``record_key_id``, ``open_record``).

        Raises IntegrityError naming the pack and the chunk if the entry points
        outside the records or the pack is cut short."""
        what = f"chunk {short_id(entry.chunk_id)} in pack {self._name}"
        end = entry.offset + entry.length
        if not HEADER_BYTES <= entry.offset < end <= self._size - FOOTER_BYTES:
            raise IntegrityError(f"The {what} lies outside the pack (truncated or damaged).")
        if not MIN_RECORD_BYTES <= entry.length <= MAX_RECORD_BYTES:
            raise IntegrityError(f"The {what} has an impossible length {entry.length}.")
        record = self._source.read_range(entry.offset, entry.length)
        if len(record) != entry.length:
            raise IntegrityError(f"The {what} is truncated.")
        return record


def read_trailer(
    name: str, source: RangeSource, index_encryption_key: bytes, pack_id: bytes | None = None
) -> list[PackEntry]:
    """Return the entries of a pack, in record order, reading only header, footer and trailer.

    Needs only the index-encryption key. Raises IntegrityError naming the pack
    if it is truncated, damaged, or its trailer was written under another key."""
    size = source.size()
    pack_id = _read_header(name, source, size, pack_id)
    footer = source.read_range(size - FOOTER_BYTES, FOOTER_BYTES)
    offset, length, end_magic = _FOOTER.unpack(footer)
    if end_magic != END_MAGIC or offset + length != size - FOOTER_BYTES or length < SALT_BYTES:
        raise IntegrityError(f"Pack {name} has no valid footer (truncated or damaged).")
    count, extra = divmod(length - SALT_BYTES - TAG_BYTES, ENTRY_BYTES)
    if extra or not 0 <= count <= MAX_ENTRIES:
        raise IntegrityError(f"Pack {name} has a trailer of impossible length {length}.")
    blob = source.read_range(offset, length)
    header = _HEADER.pack(MAGIC, FORMAT_VERSION, pack_id)
    try:
        plain = AESGCM(_trailer_key(index_encryption_key, blob[:SALT_BYTES])).decrypt(
            bytes(NONCE_BYTES), blob[SALT_BYTES:], _trailer_aad(header, offset, count)
        )
    except InvalidTag as exc:
        raise IntegrityError(
            f"The trailer of pack {name} fails authentication (damaged, or another index key's)."
        ) from exc
    return _parse_entries(name, plain, offset)


def _parse_entries(name: str, plain: bytes, records_end: int) -> list[PackEntry]:
    entries = [PackEntry(*fields) for fields in _ENTRY.iter_unpack(plain)]
    at = HEADER_BYTES
    for entry in entries:
        # Records are contiguous and in order; anything else is a writer's bug or forgery.
        if entry.offset != at or not MIN_RECORD_BYTES <= entry.length <= MAX_RECORD_BYTES:
            raise IntegrityError(f"Pack {name} lists a record at an impossible place.")
        at += entry.length
    if at != records_end:
        raise IntegrityError(f"Pack {name} lists records that do not fill it.")
    return entries


def _read_header(name: str, source: RangeSource, size: int, expected: bytes | None = None) -> bytes:
    if not HEADER_BYTES + FOOTER_BYTES <= size <= MAX_PACK_SIZE:
        raise IntegrityError(f"Pack {name} has an impossible size {size} (truncated or damaged).")
    magic, version, pack_id = _HEADER.unpack(source.read_range(0, HEADER_BYTES))
    if magic != MAGIC:
        raise IntegrityError(f"Pack {name} is not a backupctl pack.")
    if version != FORMAT_VERSION:
        raise IntegrityError(f"Pack {name} has format version {version}, not {FORMAT_VERSION}.")
    wanted = expected.hex() if expected else name.rsplit("/", 1)[-1].removesuffix(".pack")
    if pack_id.hex() != wanted:
        raise IntegrityError(f"Pack {name} holds the header of pack {pack_id.hex()}.")
    return bytes(pack_id)


def _compressor() -> zstandard.ZstdCompressor:
    compressor: zstandard.ZstdCompressor | None = getattr(_local, "compressor", None)
    if compressor is None:
        compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_content_size=True)
        _local.compressor = compressor
    return compressor


def _decompress(compressed: bytes) -> bytes:
    # The writer records the size in the frame, and zstd then allocates what
    # the frame says: refuse above one chunk before it does.
    size = zstandard.frame_content_size(compressed)
    if not 0 <= size <= MAX_SIZE:
        raise zstandard.ZstdError(f"frame content size {size} is outside [0, {MAX_SIZE}]")
    decompressor: zstandard.ZstdDecompressor | None = getattr(_local, "decompressor", None)
    if decompressor is None:
        decompressor = zstandard.ZstdDecompressor()
        _local.decompressor = decompressor
    out: bytes = decompressor.decompress(compressed)
    return out


def _record_aad(key_id: bytes, chunk_id: bytes) -> bytes:
    # The key id is bound too: a record relabelled to another key id must not
    # open, even under a caller that looks keys up by the label.
    return _RECORD_AAD + key_id + chunk_id


def _trailer_key(index_encryption_key: bytes, salt: bytes) -> bytes:
    # A fresh key per trailer: the index key lives as long as the repository,
    # so a fixed key with random nonces would eventually risk a repeat.
    material = index_encryption_key + salt
    return blake3(material, derive_key_context=_TRAILER_KEY_CONTEXT).digest()


def _trailer_aad(header: bytes, offset: int, count: int) -> bytes:
    return _TRAILER_AAD + header + struct.pack(">QI", offset, count)


def damaged_records(reader: ByteSource, entries: list[PackEntry]) -> set[bytes]:
    """The ids of the chunks whose stored bytes do not hash as their trailer
    entries (from ``read_trailer``) record, streaming the whole pack from its
    start; a record cut short by the end of the pack is damaged.

    Needs no key: the trailer, read with the index key, is authenticated."""
    damaged: set[bytes] = set()
    if len(_read_exactly(reader, HEADER_BYTES)) != HEADER_BYTES:
        return {entry.chunk_id for entry in entries}
    for entry in entries:
        record = _read_exactly(reader, entry.length)
        if blake3(record).digest(RECORD_DIGEST_BYTES) != entry.digest:
            damaged.add(entry.chunk_id)
    return damaged


def _read_exactly(reader: ByteSource, size: int) -> bytes:
    """``size`` bytes, fewer only at the end (a stream may return short reads)."""
    parts = []
    while size > 0 and (part := reader.read(size)):
        parts.append(part)
        size -= len(part)
    return b"".join(parts)
