"""The byte pipelines between sources and storage.

Backup:  source -> zstd -> framed AES-256-GCM -> SHA-256 and size -> storage
Restore: storage -> SHA-256 and size -> verify and decrypt frames -> zstd -> target

Everything streams; memory is bounded by a few frames whatever the data size.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import BinaryIO, TypeVar

import zstandard

from reconciler.crypto.stream import DecryptingReader, EncryptingWriter
from reconciler.errors import IntegrityError
from reconciler.repository.records import StoredObject
from reconciler.storage.base import CHUNK_SIZE, ObjectWriter, Storage

COMPRESSION_LEVEL = 3

T = TypeVar("T")


class _MeasuringSink:
    """Passes bytes to ``out`` while hashing and counting them."""

    def __init__(self, out: ObjectWriter) -> None:
        self._out = out
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        self._out.write(data)
        return len(data)


class _MeasuringSource:
    """Reads from ``source`` while hashing and counting what was read."""

    def __init__(self, source: BinaryIO) -> None:
        self._source = source
        self.sha256 = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1, /) -> bytes:
        data = self._source.read(size)
        self.sha256.update(data)
        self.size += len(data)
        return data


class Writable:
    """What a source writes its bytes into (typing aid for zstd's writer)."""

    def write(self, data: bytes, /) -> int:  # pragma: no cover - protocol only
        raise NotImplementedError


def store_object(
    storage: Storage,
    key: str,
    data_key: bytes,
    produce: Callable[[Writable], T],
) -> tuple[StoredObject, T]:
    """Run ``produce`` with a writer whose bytes are compressed, encrypted and stored.

    The object is committed under ``key`` only when ``produce`` returns; on any
    exception nothing is left under ``key``. Returns what was stored and what
    ``produce`` returned."""
    with storage.open_write(key) as out:
        sink = _MeasuringSink(out)
        encrypting = EncryptingWriter(sink, data_key)
        compressor = zstandard.ZstdCompressor(level=COMPRESSION_LEVEL)
        writer = compressor.stream_writer(
            encrypting,  # type: ignore[arg-type]  # any object with write() works
            closefd=False,
            write_return_read=True,
        )
        result = produce(writer)  # type: ignore[arg-type]
        writer.close()  # type: ignore[no-untyped-call]
        encrypting.close()
    name = key.rsplit("/", 1)[-1]
    return StoredObject(name, sink.size, sink.sha256.hexdigest()), result


@contextmanager
def open_object(
    storage: Storage, key: str, expected: StoredObject, data_key: bytes
) -> Iterator[BinaryIO]:
    """A reader of an object's plaintext, checked end to end.

    When the block exits normally the rest of the object is read and verified:
    every frame authenticated, the final frame present, and the stored bytes
    matching the manifest's size and SHA-256. Raises IntegrityError naming the
    object otherwise, so a caller keeps nothing it read until the block exits."""
    with storage.open_read(key) as raw:
        measured = _MeasuringSource(raw)
        decrypting = DecryptingReader(measured, data_key, key)
        decompressor = zstandard.ZstdDecompressor()
        try:
            plain = decompressor.stream_reader(
                decrypting,  # type: ignore[arg-type]  # any object with read() works
                read_across_frames=True,
                closefd=False,
            )
            yield plain
            while plain.read(CHUNK_SIZE):
                pass
        except zstandard.ZstdError:
            raise IntegrityError(f"{key} is damaged: its compressed data is invalid") from None
        while decrypting.read_frame():
            pass
        while measured.read(CHUNK_SIZE):
            pass
    if measured.size != expected.size_bytes or measured.sha256.hexdigest() != expected.sha256:
        raise IntegrityError(
            f"{key} does not match its manifest: expected {expected.size_bytes} bytes with"
            f" SHA-256 {expected.sha256[:12]}..., found {measured.size} bytes"
            f" with SHA-256 {measured.sha256.hexdigest()[:12]}..."
        )


def check_stored_object(storage: Storage, key: str, expected: StoredObject) -> str | None:
    """Without a key: None when the object exists with its recorded size and SHA-256,
    else a sentence saying what is wrong."""
    digest = hashlib.sha256()
    size = 0
    with storage.open_read(key) as raw:
        while chunk := raw.read(CHUNK_SIZE):
            digest.update(chunk)
            size += len(chunk)
    if size != expected.size_bytes:
        return f"{key} has {size} bytes, its manifest records {expected.size_bytes}"
    if digest.hexdigest() != expected.sha256:
        return f"{key} does not match the SHA-256 recorded in its manifest"
    return None
