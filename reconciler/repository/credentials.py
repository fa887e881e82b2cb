"""A salted, slow fingerprint of storage credentials: enough to notice a change,
useless to recover the credentials from."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from reconciler.repository.records import CredentialFingerprint

_ALGORITHM = "scrypt-n32768-r8-p1"


def _derive(material: bytes, salt: bytes) -> bytes:
    return hashlib.scrypt(material, salt=salt, n=2**15, r=8, p=1, maxmem=64 * 2**20, dklen=32)


def fingerprint(material: bytes, principal: str) -> CredentialFingerprint:
    """A new fingerprint with a fresh random salt."""
    salt = os.urandom(16)
    return CredentialFingerprint(
        algorithm=_ALGORITHM,
        salt=base64.b64encode(salt).decode(),
        hash=base64.b64encode(_derive(material, salt)).decode(),
        principal=principal,
    )


def matches(recorded: CredentialFingerprint, material: bytes) -> bool:
    """True when ``material`` is what ``recorded`` was made from.

    A fingerprint of an unknown algorithm never matches, so it gets re-recorded."""
    if recorded.algorithm != _ALGORITHM:
        return False
    derived = _derive(material, base64.b64decode(recorded.salt))
    return hmac.compare_digest(derived, base64.b64decode(recorded.hash))
