"""Private keys: loading the offline restore key and creating new key pairs.

The private key is only needed to restore or to run a full verify. Passphrases
are handled as bytes and never appear in a message.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import NameOID

from reconciler.crypto.certificates import (
    PEM_BEGIN,
    Certificate,
    describe_key,
    parse_certificate,
    public_key_sha256,
    read_key_file,
    to_utc,
    unsupported_key_reason,
)
from reconciler.errors import CryptoError, PassphraseRequiredError

SupportedPrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
"""The private key types that can unwrap a backup's data key."""

KEY_ALGORITHMS = ("rsa-3072", "rsa-4096", "ec-p256", "ec-p384")
"""Algorithms ``create_key_pair`` accepts, for the CLI's choices."""

DEFAULT_SUBJECT = "CN=backupctl backups"

# Certificates are backdated so that a host whose clock runs a little behind
# the one that created the key does not see a "not yet valid" certificate.
CLOCK_SKEW_ALLOWANCE = timedelta(hours=1)

_PEM_BLOCK_RE = re.compile(
    rb"-----BEGIN (?P<label>[A-Z0-9 ]+)-----\r?\n.*?-----END (?P=label)-----", re.DOTALL
)


@dataclass(frozen=True)
class PrivateKey:
    """A loaded, supported private key and where it came from."""

    key: SupportedPrivateKey = field(repr=False)
    public_key_sha256: str
    """Lowercase hex SHA-256 of the public key's DER SubjectPublicKeyInfo."""
    path: Path
    """The file it was loaded from, for messages."""
    description: str
    """``RSA 3072``, ``EC P-256``, ..."""


def load_private_key(path: Path, passphrase: bytes | None) -> PrivateKey:
    """Load a private key from a PEM (PKCS#8 or traditional) or DER file.

    A certificate in the same PEM file is ignored. A passphrase given for a key
    that is not encrypted is ignored too. Returns the PrivateKey; raises
    CryptoError naming the file when it is missing, holds no private key, is
    encrypted and no (or the wrong) passphrase was given, or the key type is
    not supported; PassphraseRequiredError (a CryptoError) when it is encrypted
    and ``passphrase`` is None."""
    data = read_key_file(path, f"private key file {path}")
    key = _deserialize(data, path, passphrase)
    reason = unsupported_key_reason(key)
    if reason is not None:
        raise CryptoError(f"private key file {path} {reason}")
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise CryptoError(f"private key file {path} uses an unsupported key type")
    return PrivateKey(
        key=key,
        public_key_sha256=public_key_sha256(key.public_key()),
        path=path,
        description=describe_key(key),
    )


def _deserialize(data: bytes, path: Path, passphrase: bytes | None) -> PrivateKeyTypes:
    """Return the private key object in a file's bytes; raises CryptoError."""
    pem = PEM_BEGIN in data
    if pem:
        data = _private_key_pem_block(data, path)
    try:
        # Trying without a passphrase first tells an unencrypted key (whose
        # passphrase, if one was given, is not needed) from an encrypted one.
        return _load(data, pem, None)
    except TypeError:
        pass  # encrypted
    except UnsupportedAlgorithm as exc:
        raise CryptoError(f"private key file {path} uses an unsupported key type") from exc
    except ValueError as exc:
        raise CryptoError(f"private key file {path} is not a PEM or DER private key") from exc
    if passphrase is None:
        raise PassphraseRequiredError(
            f"private key file {path} is encrypted; pass --key-passphrase-env VAR "
            "naming an environment variable that holds its passphrase"
        )
    try:
        return _load(data, pem, passphrase)
    except (ValueError, TypeError) as exc:
        # The library's message is not reused: it is not a sentence for users.
        raise CryptoError(
            f"private key file {path} could not be decrypted; the passphrase is wrong "
            "or the file is damaged"
        ) from exc
    except UnsupportedAlgorithm as exc:
        raise CryptoError(
            f"private key file {path} is encrypted with an unsupported algorithm"
        ) from exc


def _load(data: bytes, pem: bool, password: bytes | None) -> PrivateKeyTypes:
    """Return the key in PEM or DER ``data``; raises the library's own errors.

    TypeError means a password is missing; ValueError means malformed data or
    a wrong password; UnsupportedAlgorithm means an unknown key type.

    RSA keys are not validated on load (checking their primes takes 0.2 s, a
    tenth of a small restore). The check guards against faulty keys leaking
    the key through signatures; these keys only decrypt, they are the
    operator's own, and a key that does not belong to a backup's certificate
    is refused by its public-key SHA-256 before it is used."""
    if pem:
        return serialization.load_pem_private_key(
            data, password, unsafe_skip_rsa_key_validation=True
        )
    return serialization.load_der_private_key(data, password, unsafe_skip_rsa_key_validation=True)


def _private_key_pem_block(data: bytes, path: Path) -> bytes:
    """Return the one PEM private key block of a file; raises CryptoError otherwise."""
    blocks = [m for m in _PEM_BLOCK_RE.finditer(data) if m["label"].endswith(b"PRIVATE KEY")]
    if not blocks:
        if b"-----BEGIN CERTIFICATE-----" in data:
            raise CryptoError(
                f"private key file {path} holds a certificate but no private key; "
                "pass the private key file that belongs to the certificate"
            )
        raise CryptoError(f"private key file {path} is not a PEM or DER private key")
    if len(blocks) > 1:
        raise CryptoError(f"private key file {path} holds {len(blocks)} private keys, not one")
    if blocks[0]["label"] == b"OPENSSH PRIVATE KEY":
        raise CryptoError(
            f"private key file {path} is in OpenSSH format; convert it to PKCS#8 PEM "
            "(ssh-keygen -p -m PKCS8 -f FILE) and pass that file"
        )
    return blocks[0].group(0)


def create_key_pair(
    algorithm: str, subject: str, days: int, now: datetime
) -> tuple[Certificate, SupportedPrivateKey]:
    """Create a private key and a self-signed encryption certificate for it.

    ``algorithm`` is one of KEY_ALGORITHMS; ``subject`` is an RFC 4514 name
    such as ``CN=backupctl backups``; the certificate is valid from shortly
    before ``now`` (clock skew allowance) until ``now + days``. Returns the
    Certificate and the private key object; raises CryptoError for an unknown
    algorithm, a bad subject or a non-positive number of days, and ValueError
    for a naive ``now``."""
    if days < 1:
        raise CryptoError(f"certificate validity must be at least 1 day, not {days}")
    now = to_utc(now).replace(microsecond=0)
    name = _parse_subject(subject)
    key = _generate_key(algorithm)
    public = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW_ALLOWANCE)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(key), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )
    cert = builder.sign(key, _signature_hash(key))
    return parse_certificate(cert.public_bytes(serialization.Encoding.DER), "new certificate"), key


def _generate_key(algorithm: str) -> SupportedPrivateKey:
    """Return a fresh private key for ``algorithm``; raises CryptoError if unknown."""
    if algorithm == "rsa-3072":
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    if algorithm == "rsa-4096":
        return rsa.generate_private_key(public_exponent=65537, key_size=4096)
    if algorithm == "ec-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if algorithm == "ec-p384":
        return ec.generate_private_key(ec.SECP384R1())
    raise CryptoError(
        f"key algorithm {algorithm!r} is not supported; use one of {', '.join(KEY_ALGORITHMS)}"
    )


def _signature_hash(key: SupportedPrivateKey) -> hashes.SHA256 | hashes.SHA384:
    """Return the hash for the self-signature, matched to the key's strength."""
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size > 256:
        return hashes.SHA384()
    return hashes.SHA256()


def _parse_subject(subject: str) -> x509.Name:
    """Return the x509.Name for an RFC 4514 string; raises CryptoError if invalid."""
    try:
        name = x509.Name.from_rfc4514_string(subject)
    except ValueError as exc:
        raise CryptoError(
            f"certificate subject {subject!r} is not an RFC 4514 name like {DEFAULT_SUBJECT!r}"
        ) from exc
    if not name.get_attributes_for_oid(NameOID.COMMON_NAME):
        raise CryptoError(f"certificate subject {subject!r} needs a common name (CN=...)")
    return name


def _key_usage(key: SupportedPrivateKey) -> x509.KeyUsage:
    """Return the key usage for an encryption certificate of ``key``'s type.

    RSA keys encrypt the data key directly (key encipherment); EC keys derive
    a wrapping key by ECDH (key agreement). Digital signature covers the
    certificate's own self-signature."""
    is_rsa = isinstance(key, rsa.RSAPrivateKey)
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=is_rsa,
        data_encipherment=False,
        key_agreement=not is_rsa,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def certificate_bytes(cert: Certificate, der: bool) -> bytes:
    """Return the certificate encoded as DER if ``der``, else as PEM."""
    if der:
        return cert.der
    return x509.load_der_x509_certificate(cert.der).public_bytes(serialization.Encoding.PEM)


def private_key_pem(key: SupportedPrivateKey, passphrase: bytes | None) -> bytes:
    """Return the key as PKCS#8 PEM, encrypted with ``passphrase`` when one is given.

    Raises CryptoError for an empty passphrase: silently writing an
    unencrypted key when the operator asked for protection would be worse."""
    if passphrase is None:
        encryption: serialization.KeySerializationEncryption = serialization.NoEncryption()
    elif not passphrase:
        raise CryptoError("the private key passphrase is empty; give a non-empty passphrase")
    else:
        encryption = serialization.BestAvailableEncryption(passphrase)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def write_private_key_file(path: Path, data: bytes) -> None:
    """Create the private key file ``path``; see ``write_secret_file``."""
    write_secret_file(path, data, "private key file")


def write_secret_file(path: Path, data: bytes, what: str) -> None:
    """Create ``path`` readable by its owner only (0600) and write ``data`` to it.

    The mode is set at creation, so the secret is never briefly world-readable;
    an existing file (or symlink) is never overwritten. Raises CryptoError
    naming the file (``what`` says what it is) if it exists or cannot be
    written; a partly written file is removed."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError as exc:
        raise CryptoError(f"{what} {path} already exists; refusing to overwrite it") from exc
    except OSError as exc:
        raise CryptoError(f"{what} {path} cannot be created: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
    except OSError as exc:
        with contextlib.suppress(OSError):
            path.unlink()
        raise CryptoError(f"{what} {path} could not be written: {exc.strerror}") from exc
