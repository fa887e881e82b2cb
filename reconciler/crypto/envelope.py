"""Wrapping a backup's data key to the operator's certificate.

Every backup has its own random 32-byte data key. Only a wrapped form is
stored: RSA-OAEP for RSA certificates, and for EC certificates an ephemeral
ECDH agreement whose HKDF output encrypts the data key with AES-256-GCM.
Unwrapping needs the certificate's private key.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from reconciler.crypto.certificates import Certificate
from reconciler.crypto.keys import PrivateKey
from reconciler.crypto.stream import DATA_KEY_BYTES
from reconciler.errors import IntegrityError, WrongKeyError

SCHEME_RSA = "RSA-OAEP-SHA256"
SCHEME_ECDH = "ECDH-ES+HKDF-SHA256+A256GCM"
SCHEMES = (SCHEME_RSA, SCHEME_ECDH)

_NONCE_BYTES = 12
_TAG_BYTES = 16
_KEK_LABEL = b"backupctl wrapped data key v1"

_THUMBPRINT_RE = re.compile(r"[0-9A-F]{40}")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_JSON_FIELDS = ("scheme", "thumbprint", "publicKeySha256", "wrapped", "ephemeralPublicKey")


@dataclass(frozen=True)
class WrappedKey:
    """A data key encrypted to one certificate, as recorded with a backup."""

    scheme: str
    """SCHEME_RSA or SCHEME_ECDH."""
    thumbprint: str
    """The certificate the key is wrapped to (uppercase hex SHA-1 of its DER)."""
    public_key_sha256: str
    """Lowercase hex SHA-256 of that certificate's SubjectPublicKeyInfo."""
    wrapped: bytes
    """RSA: the OAEP ciphertext. ECDH: 12-byte nonce, then AES-GCM ciphertext and tag."""
    ephemeral_public_key: bytes | None = None
    """ECDH only: the sender's ephemeral public point, X9.62 uncompressed."""

    def to_json(self) -> dict[str, str]:
        """Return a JSON-ready dict with base64 bytes and a fixed key order."""
        out = {
            "scheme": self.scheme,
            "thumbprint": self.thumbprint,
            "publicKeySha256": self.public_key_sha256,
            "wrapped": base64.b64encode(self.wrapped).decode("ascii"),
        }
        if self.ephemeral_public_key is not None:
            out["ephemeralPublicKey"] = base64.b64encode(self.ephemeral_public_key).decode("ascii")
        return out

    @classmethod
    def from_json(cls, data: object, origin: str = "the wrapped data key record") -> WrappedKey:
        """Return the WrappedKey a ``to_json`` dict describes.

        ``origin`` names where the record came from (e.g. a manifest key) for
        messages. Raises IntegrityError when the record is malformed."""
        if not isinstance(data, Mapping):
            raise IntegrityError(f"{origin} is malformed: it is not a JSON object")
        unknown = sorted(str(k) for k in data if k not in _JSON_FIELDS)
        if unknown:
            raise IntegrityError(f"{origin} is malformed: unknown field {unknown[0]!r}")
        scheme = _text_field(data, "scheme", origin)
        if scheme not in SCHEMES:
            raise IntegrityError(f"{origin} is malformed: unknown scheme {scheme!r}")
        thumbprint = _text_field(data, "thumbprint", origin)
        if not _THUMBPRINT_RE.fullmatch(thumbprint):
            raise IntegrityError(f"{origin} is malformed: 'thumbprint' is not 40 uppercase hex")
        spki_hash = _text_field(data, "publicKeySha256", origin)
        if not _SHA256_RE.fullmatch(spki_hash):
            raise IntegrityError(
                f"{origin} is malformed: 'publicKeySha256' is not 64 lowercase hex"
            )
        ephemeral = None
        if scheme == SCHEME_ECDH:
            ephemeral = _base64_field(data, "ephemeralPublicKey", origin)
        elif "ephemeralPublicKey" in data:
            raise IntegrityError(
                f"{origin} is malformed: scheme {scheme} has no 'ephemeralPublicKey'"
            )
        return cls(
            scheme=scheme,
            thumbprint=thumbprint,
            public_key_sha256=spki_hash,
            wrapped=_base64_field(data, "wrapped", origin),
            ephemeral_public_key=ephemeral,
        )


def _text_field(data: Mapping[object, object], name: str, origin: str) -> str:
    """Return a required string field; raises IntegrityError if missing or not a string."""
    value = data.get(name)
    if not isinstance(value, str):
        raise IntegrityError(f"{origin} is malformed: {name!r} is missing or not a string")
    return value


def _base64_field(data: Mapping[object, object], name: str, origin: str) -> bytes:
    """Return a required base64 field decoded; raises IntegrityError if malformed."""
    text = _text_field(data, name, origin)
    try:
        value = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error) as exc:
        raise IntegrityError(f"{origin} is malformed: {name!r} is not valid base64") from exc
    if not value:
        raise IntegrityError(f"{origin} is malformed: {name!r} is empty")
    return value


def new_data_key() -> bytes:
    """Return a fresh random 32-byte data key from the OS CSPRNG."""
    return os.urandom(DATA_KEY_BYTES)


def wrap_data_key(data_key: bytes, cert: Certificate) -> WrappedKey:
    """Return ``data_key`` encrypted to ``cert``'s public key.

    Raises ValueError if ``data_key`` is not 32 bytes (a programming error)."""
    if len(data_key) != DATA_KEY_BYTES:
        raise ValueError(f"a data key is {DATA_KEY_BYTES} bytes, not {len(data_key)}")
    public = cert.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        return WrappedKey(
            scheme=SCHEME_RSA,
            thumbprint=cert.thumbprint,
            public_key_sha256=cert.public_key_sha256,
            wrapped=public.encrypt(data_key, _oaep()),
        )
    ephemeral = ec.generate_private_key(public.curve)
    ephemeral_point = ephemeral.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    kek = _derive_kek(ephemeral.exchange(ec.ECDH(), public), ephemeral_point, cert.thumbprint)
    nonce = os.urandom(_NONCE_BYTES)
    # The scheme is authenticated too, so a record cannot be relabelled.
    sealed = AESGCM(kek).encrypt(nonce, data_key, SCHEME_ECDH.encode("ascii"))
    return WrappedKey(
        scheme=SCHEME_ECDH,
        thumbprint=cert.thumbprint,
        public_key_sha256=cert.public_key_sha256,
        wrapped=nonce + sealed,
        ephemeral_public_key=ephemeral_point,
    )


def unwrap_data_key(wrapped: WrappedKey, key: PrivateKey) -> bytes:
    """Return the data key ``wrapped`` holds, decrypted with ``key``.

    Raises WrongKeyError when ``key`` does not belong to the certificate the
    data key was wrapped to, and IntegrityError when it does but the wrapped
    key cannot be decrypted (the record is damaged or was tampered with)."""
    if key.public_key_sha256 != wrapped.public_key_sha256:
        raise WrongKeyError(
            f"the backup's data key is wrapped to certificate {wrapped.thumbprint} and the "
            f"key file {key.path} does not belong to it"
        )
    private = key.key
    if wrapped.scheme == SCHEME_RSA and isinstance(private, rsa.RSAPrivateKey):
        data_key = _unwrap_rsa(wrapped, private)
    elif wrapped.scheme == SCHEME_ECDH and isinstance(private, ec.EllipticCurvePrivateKey):
        data_key = _unwrap_ecdh(wrapped, private)
    else:
        data_key = None
    if data_key is None or len(data_key) != DATA_KEY_BYTES:
        raise IntegrityError(
            f"the wrapped data key for certificate {wrapped.thumbprint} is damaged: it cannot "
            f"be decrypted with the matching key file {key.path}"
        )
    return data_key


def _unwrap_rsa(wrapped: WrappedKey, private: rsa.RSAPrivateKey) -> bytes | None:
    """Return the OAEP-decrypted data key, or None if decryption fails."""
    try:
        return private.decrypt(wrapped.wrapped, _oaep())
    except ValueError:
        return None


def _unwrap_ecdh(wrapped: WrappedKey, private: ec.EllipticCurvePrivateKey) -> bytes | None:
    """Return the ECDH/AES-GCM-decrypted data key, or None if any step fails."""
    point = wrapped.ephemeral_public_key
    if point is None or len(wrapped.wrapped) < _NONCE_BYTES + _TAG_BYTES:
        return None
    try:
        ephemeral = ec.EllipticCurvePublicKey.from_encoded_point(private.curve, point)
        shared = private.exchange(ec.ECDH(), ephemeral)
    except ValueError:
        return None
    kek = _derive_kek(shared, point, wrapped.thumbprint)
    nonce, sealed = wrapped.wrapped[:_NONCE_BYTES], wrapped.wrapped[_NONCE_BYTES:]
    try:
        return AESGCM(kek).decrypt(nonce, sealed, SCHEME_ECDH.encode("ascii"))
    except InvalidTag:
        return None


def _derive_kek(shared_secret: bytes, ephemeral_point: bytes, thumbprint: str) -> bytes:
    """Return the 32-byte key-encryption key for one ECDH agreement.

    The HKDF info binds a label, the ephemeral point and the recipient's
    thumbprint, each length-prefixed so that no two inputs encode alike."""
    info = b"".join(
        struct.pack(">H", len(part)) + part
        for part in (_KEK_LABEL, ephemeral_point, thumbprint.encode("ascii"))
    )
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(shared_secret)


def _oaep() -> padding.OAEP:
    """Return the OAEP padding used for RSA: SHA-256 with MGF1-SHA256, no label."""
    return padding.OAEP(
        mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None
    )
