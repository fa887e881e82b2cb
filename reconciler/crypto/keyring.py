"""A key ring: the private keys offered to restore or verify, found by public key.

An operator who rotated certificates holds several private keys; each backup
needs the one its data key was wrapped to. Keys are matched by the SHA-256 of
their public key, never by file name, so a ring can be a folder of keys
(``--key-dir``) as well as files named one by one (``--key``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from reconciler.crypto.certificates import PEM_BEGIN, PRIVATE_KEY_PEM_RE, read_key_file
from reconciler.crypto.keys import PrivateKey, load_private_key
from reconciler.errors import CryptoError

KEY_FILE_SUFFIXES = (".pem", ".key", ".der")
"""Which files of a ``--key-dir`` folder are read as keys."""


@dataclass(frozen=True)
class KeyRing:
    """The usable private keys, and why other files of a key folder were left out."""

    keys: tuple[PrivateKey, ...]
    unusable: tuple[str, ...] = ()
    """One phrase per key-folder file that could not be loaded (e.g. encrypted
    and no passphrase given): named when no usable key fits a backup."""

    def find(self, public_key_sha256: str) -> PrivateKey | None:
        """Return the key whose public key has this SHA-256, or None."""
        return next((k for k in self.keys if k.public_key_sha256 == public_key_sha256), None)


def load_key_ring(
    files: Sequence[Path], folders: Sequence[Path], passphrase: bytes | None
) -> KeyRing:
    """Load every key file in ``files`` and every key file directly in ``folders``.

    A file named explicitly must load. In a folder, certificates are skipped
    (keys often sit beside their certificate) and a file that cannot be used
    is remembered in ``unusable`` rather than failing the whole ring, since
    the backups at hand may not need it. The same key found twice is kept once.

    Returns the KeyRing. Raises CryptoError when an explicit file cannot be
    loaded, a folder is missing or holds no key file, or the ring would hold
    no usable key at all (the first folder file's problem is then the message)."""
    keys: list[PrivateKey] = [load_private_key(path, passphrase) for path in files]
    unusable: list[str] = []
    for folder in folders:
        for path in _key_files(folder):
            if _is_certificate_only(path):
                continue
            try:
                keys.append(load_private_key(path, passphrase))
            except CryptoError as exc:
                unusable.append(str(exc))
    if not keys:
        if unusable:
            raise CryptoError(unusable[0])
        raise CryptoError(
            f"no private key found in {', '.join(map(str, folders))}; it holds only certificates"
        )
    unique: dict[str, PrivateKey] = {}
    for key in keys:
        unique.setdefault(key.public_key_sha256, key)
    return KeyRing(tuple(unique.values()), tuple(unusable))


def _key_files(folder: Path) -> list[Path]:
    """Return the key files directly in ``folder``, sorted by name.

    Raises CryptoError when the folder does not exist, is not a folder, cannot
    be listed or holds no file with a key suffix."""
    try:
        entries = sorted(folder.iterdir())
    except FileNotFoundError:
        raise CryptoError(f"the key folder {folder} does not exist") from None
    except NotADirectoryError:
        raise CryptoError(f"the key folder {folder} is not a folder") from None
    except OSError as exc:
        raise CryptoError(f"the key folder {folder} cannot be read: {exc.strerror}") from None
    found = [p for p in entries if p.suffix.lower() in KEY_FILE_SUFFIXES and p.is_file()]
    if not found:
        raise CryptoError(
            f"the key folder {folder} holds no {', '.join('*' + s for s in KEY_FILE_SUFFIXES)} file"
        )
    return found


def _is_certificate_only(path: Path) -> bool:
    """Return whether a file holds a certificate and no private key.

    Unreadable files return False, so that loading them reports why."""
    try:
        data = read_key_file(path, str(path))
    except CryptoError:
        return False
    if PEM_BEGIN in data:
        return b"-----BEGIN CERTIFICATE-----" in data and not PRIVATE_KEY_PEM_RE.search(data)
    try:
        x509.load_der_x509_certificate(data)
    except ValueError:
        return False
    return True
