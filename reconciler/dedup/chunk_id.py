"""Chunk ids: keyed BLAKE3 of a chunk's plaintext under the chunk-id key.

Keyed, so that someone who can list a repository's ids (a backup host, a
reader of the storage) cannot test whether a file they guess is in it without
the index key.
"""

from __future__ import annotations

from blake3 import blake3

CHUNK_ID_BYTES = 32


def chunk_id(id_key: bytes, plaintext: bytes | memoryview) -> bytes:
    """Return the 32-byte id of ``plaintext`` under ``id_key`` (32 bytes)."""
    return blake3(plaintext, key=id_key).digest()


def chunk_id_hex(chunk: bytes) -> str:
    """Return the lowercase hex form of a chunk id, as used in names and messages."""
    return chunk.hex()
