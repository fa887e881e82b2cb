"""A source's chunk list: the ids and lengths of its chunks, in order, under the index key.

Layout::

    header   magic b"BKCTLLST" | version (1 byte, 1) | key check (8) | salt (16)
    body     the framed AES-256-GCM stream of ``reconciler.crypto.stream`` of entry*
    entry    chunk id (32 bytes) | chunk length (4 bytes BE)

The stream's key is derived from the index-encryption key and the list's own
random salt (a changed salt gives another key, so it fails authentication),
so a host holding the index key can walk a backup's chunks (verify without the
private key, reclaim) but never read their data. The key check, derived from
the index-encryption key, tells a wrong key apart from damage. The stream
authenticates every frame, its order and its end, so a cut list is refused.

At 36 bytes an entry, a 10 TB source of 10 million chunks is a 360 MB list:
neither writer nor reader holds more than a frame (about 1 MiB) of it.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from types import TracebackType

from blake3 import blake3

from reconciler.crypto.stream import DecryptingReader, EncryptingWriter
from reconciler.dedup.chunk_id import CHUNK_ID_BYTES
from reconciler.errors import CryptoError, IntegrityError
from reconciler.streams import ByteSink, ByteSource

MAGIC = b"BKCTLLST"
FORMAT_VERSION = 1
KEY_CHECK_BYTES = 8
SALT_BYTES = 16

_HEADER = struct.Struct(">8sB8s16s")
HEADER_BYTES = _HEADER.size
_ENTRY = struct.Struct(">32sI")
ENTRY_BYTES = _ENTRY.size
FRAME_SIZE = ENTRY_BYTES << 15
"""About 1.1 MiB of whole entries a frame: frames stay small enough to hold."""
_KEY_CONTEXT = "backupctl 2026 dedup chunk list v1"
_KEY_CHECK_CONTEXT = "backupctl 2026 dedup chunk list key check v1"


class ChunkListWriter:
    """Writes a chunk list to ``out``: ``add`` each chunk in order, then ``close``.

    Buffers at most one frame. Used as a context manager, an exception inside
    the block abandons the list without its final frame, so a partial list
    reads as truncated, never as complete. ``out`` is not closed."""

    def __init__(self, out: ByteSink, index_encryption_key: bytes) -> None:
        """Write the header."""
        salt = os.urandom(SALT_BYTES)
        out.write(_HEADER.pack(MAGIC, FORMAT_VERSION, _key_check(index_encryption_key), salt))
        self._stream = EncryptingWriter(out, _list_key(index_encryption_key, salt), FRAME_SIZE)
        self._count = 0
        self._total = 0

    @property
    def count(self) -> int:
        """Chunks added so far."""
        return self._count

    @property
    def total_length(self) -> int:
        """Sum of the lengths added so far (the source's size in bytes)."""
        return self._total

    @property
    def bytes_written(self) -> int:
        """Bytes written to ``out`` so far, header included."""
        return HEADER_BYTES + self._stream.bytes_written

    def add(self, chunk_id: bytes, length: int) -> None:
        """Append one chunk. Raises ValueError for a malformed id or length, or after close."""
        if len(chunk_id) != CHUNK_ID_BYTES:
            raise ValueError(f"a chunk id is {CHUNK_ID_BYTES} bytes, not {len(chunk_id)}")
        if not 0 <= length < 1 << 32:
            raise ValueError(f"a chunk length of {length} does not fit in 4 bytes")
        self._stream.write(_ENTRY.pack(chunk_id, length))
        self._count += 1
        self._total += length

    def close(self) -> None:
        """Write the final frame (idempotent); raises what ``out`` raises."""
        self._stream.close()

    def abandon(self) -> None:
        """Stop without the final frame, so what was written reads as truncated."""
        self._stream.abandon()

    def __enter__(self) -> ChunkListWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abandon()


def read_chunk_list(
    name: str, reader: ByteSource, index_encryption_key: bytes
) -> Iterator[tuple[bytes, int]]:
    """Return an iterator over the (chunk id, length) pairs of the list read from ``reader``.

    The header is checked now: raises CryptoError if the list was written under
    another index key, IntegrityError naming ``name`` if it is not a chunk
    list. Iterating raises IntegrityError naming ``name`` on damage or
    truncation; pairs come as their frame verifies, so the list is whole
    only once iteration ends without error."""
    header = _read_exactly(reader, HEADER_BYTES)
    if len(header) < HEADER_BYTES or not header.startswith(MAGIC):
        raise IntegrityError(f"Chunk list {name} is truncated or not a backupctl chunk list.")
    _magic, version, check, salt = _HEADER.unpack(header)
    if version != FORMAT_VERSION:
        raise IntegrityError(
            f"Chunk list {name} has format version {version}, not {FORMAT_VERSION}."
        )
    if check != _key_check(index_encryption_key):
        raise CryptoError(
            f"Chunk list {name} was written under another index key (wrong index key)."
        )
    stream = DecryptingReader(reader, _list_key(index_encryption_key, salt), f"Chunk list {name}")
    return _entries(name, stream)


def _entries(name: str, stream: DecryptingReader) -> Iterator[tuple[bytes, int]]:
    carry = b""
    while frame := stream.read_frame():
        data = carry + frame if carry else frame
        whole = len(data) - len(data) % ENTRY_BYTES
        yield from _ENTRY.iter_unpack(memoryview(data)[:whole])
        carry = data[whole:]
    if carry:
        raise IntegrityError(f"Chunk list {name} ends inside an entry (damaged).")


def _read_exactly(reader: ByteSource, size: int) -> bytes:
    parts: list[bytes] = []
    got = 0
    while got < size:
        more = reader.read(size - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def _list_key(index_encryption_key: bytes, salt: bytes) -> bytes:
    # A fresh key per list, like index runs: one key for all lists of the
    # repository's life would make the stream's own salt the only separation.
    return blake3(index_encryption_key + salt, derive_key_context=_KEY_CONTEXT).digest()


def _key_check(index_encryption_key: bytes) -> bytes:
    return blake3(index_encryption_key, derive_key_context=_KEY_CHECK_CONTEXT).digest(
        length=KEY_CHECK_BYTES
    )
