"""The pack format: encrypted chunks in one object, with an index-key trailer.

Layout::

    header   magic b"BKCTLPAK" | version (1 byte, 1) | pack id (16 random bytes)
    record*  nonce (12 bytes) | AES-256-GCM(zstd(chunk)) and tag
    trailer  salt (16 bytes) | AES-256-GCM(entry*) and tag
    footer   trailer offset (8 bytes BE) | trailer length (4 bytes BE) | b"BKCTLEND"

    entry    chunk id (32 bytes) | record offset (4 bytes BE) | record length (4 bytes BE)

Records are encrypted under HKDF-SHA256(data key, salt=pack id), the backup
run's data key made specific to this pack; a record's nonce is its index in
the pack, so no nonce repeats under one key (pack ids are random, 128 bits).
The associated data of a record is its chunk id: a record moved to another
id's place fails authentication, and the reader also checks the keyed id of
what it decrypted. The trailer is encrypted under a key derived from the
index-encryption key and its own random salt, with the header, the trailer
offset and the entry count as associated data: a host holding the index key
can list what a pack holds (and rebuild the index from packs) but cannot
decrypt a record. The footer is plain, but every value in it is checked.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Protocol

import zstandard
from blake3 import blake3
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from reconciler.dedup.chunk_id import CHUNK_ID_BYTES, chunk_id
from reconciler.dedup.chunker import MAX_SIZE
from reconciler.errors import IntegrityError
from reconciler.streams import ByteSink

MAGIC = b"BKCTLPAK"
END_MAGIC = b"BKCTLEND"
FORMAT_VERSION = 1
PACK_ID_BYTES = 16
NONCE_BYTES = 12
TAG_BYTES = 16
SALT_BYTES = 16
DATA_KEY_BYTES = 32

TARGET_PACK_SIZE = 32 << 20
"""A writer's caller starts a new pack past this: tens of MiB keeps the number
of objects low (300,000 for 10 TB) while a restore of one file reads little."""
MAX_PACK_SIZE = 1 << 31
"""Offsets and lengths are 4-byte fields; a reader refuses anything larger."""
MAX_RECORD_BYTES = MAX_SIZE + MAX_SIZE // 64 + 1024 + NONCE_BYTES + TAG_BYTES
"""zstd's worst case for a maximum-size chunk, plus nonce and tag: a damaged
length can never make a reader allocate more than this."""
MAX_ENTRIES = MAX_PACK_SIZE // (NONCE_BYTES + TAG_BYTES + 9)
"""A record is at least nonce, tag and the smallest zstd frame."""
ZSTD_LEVEL = 3
"""zstd's default: about 300 MB/s a core, most of what higher levels gain."""

_HEADER = struct.Struct(">8sB16s")
HEADER_BYTES = _HEADER.size
_FOOTER = struct.Struct(">QI8s")
FOOTER_BYTES = _FOOTER.size
_ENTRY = struct.Struct(">32sII")
ENTRY_BYTES = _ENTRY.size
_NONCE = struct.Struct(">Q4x")
_RECORD_KEY_INFO = b"backupctl pack record v1"
_TRAILER_KEY_CONTEXT = "backupctl 2026 dedup pack trailer v1"
_TRAILER_AAD = b"backupctl pack trailer v1"


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


def new_pack_id() -> bytes:
    """Return a new random pack id; its hex form is the pack's name."""
    return os.urandom(PACK_ID_BYTES)


class PackWriter:
    """Writes one pack to a sink: ``add`` each chunk, then ``finish``.

    The data key is the backup run's (32 bytes); the index-encryption key comes
    from ``keys.DerivedKeys``. Raises ValueError on a chunk larger than the
    chunker's maximum (a programming error, not bad data)."""

    def __init__(
        self, sink: ByteSink, data_key: bytes, index_encryption_key: bytes, pack_id: bytes
    ) -> None:
        self._sink = sink
        self._aead = AESGCM(_record_key(data_key, pack_id))
        self._index_key = index_encryption_key
        self._header = _HEADER.pack(MAGIC, FORMAT_VERSION, pack_id)
        self._zstd = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_content_size=True)
        self._entries: list[bytes] = []
        self._size = 0
        self._write(self._header)

    @property
    def size(self) -> int:
        """Bytes written so far (compare with TARGET_PACK_SIZE)."""
        return self._size

    def add(self, chunk_id_: bytes, plaintext: bytes | memoryview) -> PackEntry:
        """Append one chunk; return where its record is."""
        if len(chunk_id_) != CHUNK_ID_BYTES:
            raise ValueError(f"a chunk id is {CHUNK_ID_BYTES} bytes, not {len(chunk_id_)}")
        if len(plaintext) > MAX_SIZE:
            raise ValueError(f"a chunk of {len(plaintext)} bytes is above {MAX_SIZE}")
        nonce = _NONCE.pack(len(self._entries))
        sealed = self._aead.encrypt(nonce, self._zstd.compress(plaintext), chunk_id_)
        entry = PackEntry(chunk_id_, self._size, NONCE_BYTES + len(sealed))
        self._write(nonce)
        self._write(sealed)
        self._entries.append(_ENTRY.pack(chunk_id_, entry.offset, entry.length))
        return entry

    def finish(self) -> int:
        """Write the trailer and footer; return the pack's total size."""
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
        self._sink.write(data)
        self._size += len(data)


class PackReader:
    """Reads records of one pack with the data key of the run that wrote it."""

    def __init__(self, name: str, source: RangeSource, data_key: bytes, id_key: bytes) -> None:
        """Read and check the header. Raises IntegrityError naming the pack."""
        self._name = name
        self._source = source
        self._size = source.size()
        pack_id = _read_header(name, source, self._size)
        self._aead = AESGCM(_record_key(data_key, pack_id))
        self._id_key = id_key

    def read_chunk(self, entry: PackEntry) -> bytes:
        """Return the plaintext of the chunk ``entry`` locates.

        Raises IntegrityError naming the pack and the chunk if the record is
        out of the pack, damaged, another chunk's, or not decryptable with this
        data key."""
        what = f"chunk {entry.chunk_id.hex()} in pack {self._name}"
        end = entry.offset + entry.length
        if not HEADER_BYTES <= entry.offset < end <= self._size - FOOTER_BYTES:
            raise IntegrityError(f"The {what} lies outside the pack (truncated or damaged).")
        if entry.length > MAX_RECORD_BYTES or entry.length < NONCE_BYTES + TAG_BYTES:
            raise IntegrityError(f"The {what} has an impossible length {entry.length}.")
        record = self._source.read_range(entry.offset, entry.length)
        if len(record) != entry.length:
            raise IntegrityError(f"The {what} is truncated.")
        try:
            sealed = record[NONCE_BYTES:]
            compressed = self._aead.decrypt(record[:NONCE_BYTES], sealed, entry.chunk_id)
            plaintext = _decompress(compressed)
        except (InvalidTag, zstandard.ZstdError) as exc:
            raise IntegrityError(
                f"The {what} fails authentication (damaged, moved, or another data key's)."
            ) from exc
        if chunk_id(self._id_key, plaintext) != entry.chunk_id:
            raise IntegrityError(f"The {what} does not hold the data its id names.")
        return plaintext


def _decompress(compressed: bytes) -> bytes:
    # The writer records the size in the frame, and zstd then allocates what
    # the frame says: refuse above one chunk before it does.
    size = zstandard.frame_content_size(compressed)
    if not 0 <= size <= MAX_SIZE:
        raise zstandard.ZstdError(f"frame content size {size} is outside [0, {MAX_SIZE}]")
    out: bytes = zstandard.ZstdDecompressor().decompress(compressed)
    return out


def read_trailer(name: str, source: RangeSource, index_encryption_key: bytes) -> list[PackEntry]:
    """Return the entries of a pack, in record order, reading only header, footer and trailer.

    Needs only the index-encryption key. Raises IntegrityError naming the pack
    if it is truncated, damaged, or its trailer was written under another key."""
    size = source.size()
    pack_id = _read_header(name, source, size)
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
        if entry.offset != at or entry.length < NONCE_BYTES + TAG_BYTES:
            raise IntegrityError(f"Pack {name} lists a record at an impossible place.")
        at += entry.length
    if at != records_end:
        raise IntegrityError(f"Pack {name} lists records that do not fill it.")
    return entries


def _read_header(name: str, source: RangeSource, size: int) -> bytes:
    if not HEADER_BYTES + FOOTER_BYTES <= size <= MAX_PACK_SIZE:
        raise IntegrityError(f"Pack {name} has an impossible size {size} (truncated or damaged).")
    magic, version, pack_id = _HEADER.unpack(source.read_range(0, HEADER_BYTES))
    if magic != MAGIC:
        raise IntegrityError(f"Pack {name} is not a backupctl pack.")
    if version != FORMAT_VERSION:
        raise IntegrityError(f"Pack {name} has format version {version}, not {FORMAT_VERSION}.")
    if pack_id.hex() != name.rsplit("/", 1)[-1]:
        raise IntegrityError(f"Pack {name} holds the header of pack {pack_id.hex()}.")
    return bytes(pack_id)


def _record_key(data_key: bytes, pack_id: bytes) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=pack_id, info=_RECORD_KEY_INFO)
    return hkdf.derive(data_key)


def _trailer_key(index_encryption_key: bytes, salt: bytes) -> bytes:
    # A fresh key per trailer: the index key lives as long as the repository,
    # so a fixed key with random nonces would eventually risk a repeat.
    material = index_encryption_key + salt
    return blake3(material, derive_key_context=_TRAILER_KEY_CONTEXT).digest()


def _trailer_aad(header: bytes, offset: int, count: int) -> bytes:
    return _TRAILER_AAD + header + struct.pack(">QI", offset, count)
