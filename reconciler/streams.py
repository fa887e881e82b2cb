"""The byte-stream vocabulary shared by sources, crypto, backup and storage.

One module at the bottom of the package, so that none of those layers has to
import another just to name "something bytes are written to"."""

from __future__ import annotations

from typing import Protocol

CHUNK_SIZE = 1024 * 1024
"""Bytes moved at a time; nothing reads a file, a stream or an object whole."""


class ByteSink(Protocol):
    """Where a stream of bytes goes: a file, a storage writer, an encrypting or
    compressing stage. ``write`` takes the whole of ``data`` (or raises)."""

    def write(self, data: bytes, /) -> object: ...


class ByteSource(Protocol):
    """Where a stream of bytes comes from: a file, a storage reader, a
    decrypting or decompressing stage. ``read`` returns at most ``size``
    bytes, and ``b""`` only at the end."""

    def read(self, size: int, /) -> bytes: ...
