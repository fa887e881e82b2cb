"""Loading and checking the operator's public encryption certificate.

The backup host only ever holds the public certificate; the matching private
key stays offline until a restore. Loading therefore refuses files that also
carry a private key, so that a mistaken export is caught before it is deployed.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa, x448, x25519
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificatePublicKeyTypes,
    PrivateKeyTypes,
    PublicKeyTypes,
)

from reconciler.errors import CryptoError

SupportedPublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
"""The public key types backups can be encrypted to."""

MIN_RSA_BITS = 2048
SUPPORTED_CURVES: dict[str, str] = {"secp256r1": "P-256", "secp384r1": "P-384"}
"""Curve name as the library reports it -> the name we show to people."""

SUPPORTED_KEYS_TEXT = f"RSA >= {MIN_RSA_BITS} bits or EC P-256/P-384"

# Any PEM private key block: "PRIVATE KEY", "ENCRYPTED PRIVATE KEY",
# "RSA PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY", ...
PRIVATE_KEY_PEM_RE = re.compile(rb"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----")
PEM_BEGIN = b"-----BEGIN "
MAX_KEY_FILE_BYTES = 1 << 20


@dataclass(frozen=True)
class Certificate:
    """A parsed, supported encryption certificate (public part only)."""

    der: bytes = field(repr=False)
    thumbprint: str
    """Uppercase hex SHA-1 of ``der``; what each backup records."""
    public_key_sha256: str
    """Lowercase hex SHA-256 of the DER SubjectPublicKeyInfo; matches a private key."""
    subject: str
    """RFC 4514 form, e.g. ``CN=backupctl backups``."""
    not_before: datetime
    not_after: datetime
    key_description: str
    """``RSA 3072``, ``EC P-256``, ..."""

    def public_key(self) -> SupportedPublicKey:
        """Return the certificate's public key object.

        The key type was checked when the certificate was loaded, so this
        raises nothing for a Certificate built by this module."""
        key = x509.load_der_x509_certificate(self.der).public_key()
        if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
            raise TypeError(f"certificate {self.thumbprint} has an unsupported key")
        return key


def thumbprint_of(der: bytes) -> str:
    """Return the uppercase hex SHA-1 of a DER certificate (its thumbprint)."""
    return hashlib.sha1(der, usedforsecurity=False).hexdigest().upper()


def public_key_sha256(key: PublicKeyTypes) -> str:
    """Return the lowercase hex SHA-256 of a public key's DER SubjectPublicKeyInfo.

    The encoding is regenerated from the key object rather than copied from the
    certificate, so a certificate and its private key always hash alike (an EC
    point may be stored compressed in one and uncompressed in the other)."""
    spki = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).hexdigest()


def describe_key(key: PublicKeyTypes | PrivateKeyTypes | CertificatePublicKeyTypes) -> str:
    """Return a short human name of a key's type and size, e.g. ``RSA 3072``."""
    if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        return f"RSA {key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        return f"EC {SUPPORTED_CURVES.get(key.curve.name, key.curve.name)}"
    if isinstance(key, dsa.DSAPublicKey | dsa.DSAPrivateKey):
        return f"DSA {key.key_size}"
    named: list[tuple[tuple[type, ...], str]] = [
        ((ed25519.Ed25519PublicKey, ed25519.Ed25519PrivateKey), "Ed25519"),
        ((ed448.Ed448PublicKey, ed448.Ed448PrivateKey), "Ed448"),
        ((x25519.X25519PublicKey, x25519.X25519PrivateKey), "X25519"),
        ((x448.X448PublicKey, x448.X448PrivateKey), "X448"),
    ]
    for types, name in named:
        if isinstance(key, types):
            return name
    return type(key).__name__


def unsupported_key_reason(
    key: PublicKeyTypes | PrivateKeyTypes | CertificatePublicKeyTypes,
) -> str | None:
    """Return why a key cannot protect backups (``None`` when it can).

    The reason is a fragment such as ``uses RSA 1024, but backups need RSA >=
    2048 bits or EC P-256/P-384``, meant to follow the name of the file."""
    if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        supported = key.key_size >= MIN_RSA_BITS
    elif isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        supported = key.curve.name in SUPPORTED_CURVES
    else:
        supported = False
    if supported:
        return None
    return f"uses {describe_key(key)}, but backups need {SUPPORTED_KEYS_TEXT}"


def parse_certificate(data: bytes, name: str) -> Certificate:
    """Parse a PEM or DER certificate held in memory.

    ``name`` says where the bytes came from (a path) and starts every message.
    Returns the Certificate; raises CryptoError when the data is not exactly
    one certificate, also holds a private key, or uses an unsupported key."""
    cert = _parse_pem(data, name) if PEM_BEGIN in data else _parse_der(data, name)
    return _to_certificate(cert, name)


def load_certificate(path: Path) -> Certificate:
    """Load the encryption certificate from a PEM or DER file.

    Returns the Certificate; raises CryptoError naming the file when it cannot
    be read or is not one supported public certificate (see parse_certificate)."""
    name = f"certificate file {path}"
    return parse_certificate(read_key_file(path, name), name)


def read_key_file(path: Path, name: str) -> bytes:
    """Return the bytes of a certificate or key file; ``name`` starts messages.

    Raises CryptoError when the file is missing, unreadable or far larger than
    any certificate or key (a wrong path must not exhaust memory)."""
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_KEY_FILE_BYTES + 1)
    except FileNotFoundError as exc:
        raise CryptoError(f"{name} does not exist") from exc
    except IsADirectoryError as exc:
        raise CryptoError(f"{name} is a directory, not a file") from exc
    except OSError as exc:
        raise CryptoError(f"{name} cannot be read: {exc.strerror}") from exc
    if len(data) > MAX_KEY_FILE_BYTES:
        raise CryptoError(f"{name} is larger than {MAX_KEY_FILE_BYTES} bytes, too large for a key")
    return data


def _parse_pem(data: bytes, name: str) -> x509.Certificate:
    """Return the single certificate of PEM data; raises CryptoError otherwise."""
    if PRIVATE_KEY_PEM_RE.search(data):
        raise CryptoError(
            f"{name} contains a private key; only the public certificate belongs on the "
            "backup host, so export the certificate alone and keep the private key offline"
        )
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise CryptoError(f"{name} is not a PEM or DER X.509 certificate") from exc
    if len(certs) > 1:
        raise CryptoError(
            f"{name} contains {len(certs)} certificates; it must hold exactly one, "
            "the certificate backups are encrypted to"
        )
    return certs[0]


def _parse_der(data: bytes, name: str) -> x509.Certificate:
    """Return the certificate of DER data; raises CryptoError otherwise."""
    try:
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        if _looks_like_der_private_key(data):
            raise CryptoError(
                f"{name} holds a private key, not a certificate; only the public "
                "certificate belongs on the backup host"
            ) from exc
        raise CryptoError(f"{name} is not a PEM or DER X.509 certificate") from exc


def _looks_like_der_private_key(data: bytes) -> bool:
    """Return whether DER data parses as a (possibly encrypted) private key."""
    try:
        serialization.load_der_private_key(data, None)
    except TypeError:
        return True  # an encrypted PKCS#8 key: refused only for lack of a password
    except (ValueError, UnsupportedAlgorithm):
        return False
    return True


def _to_certificate(cert: x509.Certificate, name: str) -> Certificate:
    """Return the Certificate for a parsed X.509 object; raises CryptoError for a bad key."""
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CryptoError(f"{name} uses a public key type that cannot be read") from exc
    reason = unsupported_key_reason(key)
    if reason is not None:
        raise CryptoError(f"{name} {reason}")
    der = cert.public_bytes(serialization.Encoding.DER)
    return Certificate(
        der=der,
        thumbprint=thumbprint_of(der),
        public_key_sha256=public_key_sha256(key),
        subject=cert.subject.rfc4514_string(),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        key_description=describe_key(key),
    )


def certificate_validity_problem(cert: Certificate, now: datetime) -> str | None:
    """Return a sentence if the certificate is expired or not yet valid at ``now``.

    Returns ``None`` when it is valid; ``now`` must be timezone-aware (a naive
    datetime is a programming error and raises ValueError)."""
    now = to_utc(now)
    if now > cert.not_after:
        return (
            f"certificate {cert.thumbprint} ({cert.subject}) expired on "
            f"{_format_time(cert.not_after)}"
        )
    if now < cert.not_before:
        return (
            f"certificate {cert.thumbprint} ({cert.subject}) is not valid before "
            f"{_format_time(cert.not_before)}"
        )
    return None


def expires_within(cert: Certificate, now: datetime, days: float) -> bool:
    """Return whether the certificate expires (or has expired) within ``days`` of ``now``."""
    return cert.not_after - to_utc(now) <= timedelta(days=days)


def to_utc(moment: datetime) -> datetime:
    """Return ``moment`` in UTC; raises ValueError for a naive datetime.

    A naive time is a programming error: guessing its zone could shift
    validity checks by hours."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("a timezone-aware datetime is required")
    return moment.astimezone(UTC)


def _format_time(moment: datetime) -> str:
    """Return ``moment`` as ISO 8601 UTC with a ``Z`` suffix."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
