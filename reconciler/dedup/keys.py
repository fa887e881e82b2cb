"""The repository's index key and the independent keys derived from it.

The index key (32 random bytes) lets a backup host name chunks and find them
in the index without being able to read any data. Three things are derived
from it with BLAKE3's key-derivation mode, each under its own context string,
so knowing one tells nothing about another:

* the chunk-id key (keyed BLAKE3 of a chunk's plaintext, ``chunk_id``);
* the chunker's seed (FastCDC's gear table is XORed with it, so chunk
  boundaries, and therefore chunk sizes, are not the same in every repository);
* the index-encryption key (AES-256-GCM of pack trailers and index shards).
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass, field

from blake3 import blake3

from reconciler.errors import CryptoError

INDEX_KEY_BYTES = 32

# Context strings are fixed forever: changing one changes every chunk id.
_ID_CONTEXT = "backupctl 2026 dedup chunk-id key v1"
_SEED_CONTEXT = "backupctl 2026 dedup chunker seed v1"
_INDEX_ENCRYPTION_CONTEXT = "backupctl 2026 dedup index-encryption key v1"
_CHECK_CONTEXT = "backupctl 2026 dedup index key check v1"

SEED_MAX = (1 << 63) - 1
"""pyfastcdc shifts the seed left by one bit into a 64-bit integer, so it must
stay below 2**63; 0 means "no seed" to it, so seeds are in [1, SEED_MAX]."""


@dataclass(frozen=True)
class IndexKey:
    """The 32-byte index key. Its repr never shows the bytes."""

    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.secret) != INDEX_KEY_BYTES:
            raise CryptoError(f"An index key is {INDEX_KEY_BYTES} bytes, not {len(self.secret)}.")

    @classmethod
    def generate(cls) -> IndexKey:
        """Return a new random index key."""
        return cls(os.urandom(INDEX_KEY_BYTES))

    @classmethod
    def from_base64(cls, text: str, *, where: str) -> IndexKey:
        """Parse the base64 text of an index key; ``where`` names its origin for the message.

        Raises CryptoError (one sentence naming ``where``, never quoting the
        text) if it is not base64 of exactly 32 bytes."""
        try:
            raw = base64.b64decode(text.strip(), validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != INDEX_KEY_BYTES:
            raise CryptoError(
                f"The index key in {where} is not valid: it must be the base64 text of"
                f" {INDEX_KEY_BYTES} random bytes"
                " (make one with `backupctl keys create --index-key`)."
            )
        return cls(raw)

    def to_base64(self) -> str:
        """Return the base64 text form (what ``from_base64`` reads)."""
        return base64.b64encode(self.secret).decode("ascii")

    def check(self) -> str:
        """A public check value (hex): two keys with the same check are the same
        key, and the check tells nothing else about the key."""
        return _derive(_CHECK_CONTEXT, self.secret, 16).hex()

    def derive(self) -> DerivedKeys:
        """Return the chunk-id key, chunker seed and index-encryption key of this key."""
        return DerivedKeys(
            chunk_id_key=_derive(_ID_CONTEXT, self.secret, 32),
            chunker_seed=_seed(_derive(_SEED_CONTEXT, self.secret, 8)),
            index_encryption_key=_derive(_INDEX_ENCRYPTION_CONTEXT, self.secret, 32),
        )


@dataclass(frozen=True)
class DerivedKeys:
    """What a backup host works with; none of it decrypts data."""

    chunk_id_key: bytes = field(repr=False)
    chunker_seed: int = field(repr=False)
    index_encryption_key: bytes = field(repr=False)


def _derive(context: str, material: bytes, length: int) -> bytes:
    return blake3(material, derive_key_context=context).digest(length=length)


def _seed(raw: bytes) -> int:
    return int.from_bytes(raw, "big") % SEED_MAX + 1
