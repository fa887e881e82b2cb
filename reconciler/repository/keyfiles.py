"""The keys a deduplicating (format 2) repository keeps, as frozen records with a JSON form.

* The index key record: the index key's public check value, the key wrapped to
  each certificate (so the private key alone restores and verifies), and the
  key itself only when the repository generated it (no ``indexKey`` configured).
* A data key record: one backup run's data key wrapped to each certificate.
  Packs outlive the run that wrote them, so its key cannot live only in that
  run's manifest; re-wrapping rewrites these records and nothing else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from reconciler.crypto.certificates import Certificate
from reconciler.crypto.envelope import WrappedKey, unwrap_data_key, wrap_data_key
from reconciler.crypto.keyring import KeyRing
from reconciler.dedup.keys import IndexKey
from reconciler.errors import ConfigError, IntegrityError, WrongKeyError

_HEX_CHECK = re.compile(r"[0-9a-f]{32}")
KEY_ID_BYTES = 16


@dataclass(frozen=True)
class IndexKeyRecord:
    check: str
    """``IndexKey.check()`` of the repository's index key."""
    wrapped: tuple[WrappedKey, ...]
    stored: str | None
    """The key's base64 text when the repository generated it; None when configured."""

    def __repr__(self) -> str:  # the stored key must never reach a log
        return f"IndexKeyRecord(check={self.check!r}, wrapped={len(self.wrapped)})"


@dataclass(frozen=True)
class DataKeyRecord:
    key_id: str
    """Hex of the 16-byte key id that every record encrypted under the key starts with."""
    wrapped: tuple[WrappedKey, ...]


def index_key_to_json(record: IndexKeyRecord) -> dict[str, Any]:
    data: dict[str, Any] = {
        "check": record.check,
        "wrappedKeys": [w.to_json() for w in record.wrapped],
    }
    if record.stored is not None:
        data["storedKey"] = record.stored
    return data


def index_key_from_json(data: Any, where: str) -> IndexKeyRecord:
    _expect_fields(data, where, required=("check", "wrappedKeys"), optional=("storedKey",))
    check = data["check"]
    if not isinstance(check, str) or not _HEX_CHECK.fullmatch(check):
        raise IntegrityError(f"{where} is damaged: 'check' is not 32 lowercase hex digits")
    stored = data.get("storedKey")
    if stored is not None and not isinstance(stored, str):
        raise IntegrityError(f"{where} is damaged: 'storedKey' is not text")
    return IndexKeyRecord(check, _wrapped_list(data["wrappedKeys"], where), stored)


def data_key_to_json(record: DataKeyRecord) -> dict[str, Any]:
    return {"keyId": record.key_id, "wrappedKeys": [w.to_json() for w in record.wrapped]}


def data_key_from_json(data: Any, where: str) -> DataKeyRecord:
    _expect_fields(data, where, required=("keyId", "wrappedKeys"), optional=())
    key_id = data["keyId"]
    if not isinstance(key_id, str) or not re.fullmatch(r"[0-9a-f]{32}", key_id):
        raise IntegrityError(f"{where} is damaged: 'keyId' is not 32 lowercase hex digits")
    return DataKeyRecord(key_id, _wrapped_list(data["wrappedKeys"], where))


def _expect_fields(
    data: Any, where: str, required: tuple[str, ...], optional: tuple[str, ...]
) -> None:
    if not isinstance(data, dict):
        raise IntegrityError(f"{where} is damaged: it is not a JSON object")
    for name in required:
        if name not in data:
            raise IntegrityError(f"{where} is damaged: it has no '{name}'")
    unknown = sorted(set(data) - set(required) - set(optional))
    if unknown:
        raise IntegrityError(f"{where} is damaged: unknown field '{unknown[0]}'")


def _wrapped_list(value: Any, where: str) -> tuple[WrappedKey, ...]:
    if not isinstance(value, list) or not value:
        raise IntegrityError(f"{where} is damaged: 'wrappedKeys' is not a non-empty list")
    return tuple(WrappedKey.from_json(item, f"a wrapped key in {where}") for item in value)


def new_index_key_record(
    configured: IndexKey | None, certificate: Certificate
) -> tuple[IndexKey, IndexKeyRecord]:
    """The index key a repository starts (or upgrades) with, and its record.

    A configured key is kept out of the storage except wrapped to the
    certificate; without one a key is generated and also stored as it is
    (someone who can read the storage can then test whether a file they
    already have is in a backup, and still read nothing)."""
    key = configured or IndexKey.generate()
    return key, index_key_record(key, certificate, stored=configured is None)


def index_key_record(key: IndexKey, certificate: Certificate, *, stored: bool) -> IndexKeyRecord:
    """The record of ``key``: wrapped to ``certificate``, and kept as it is when ``stored``."""
    return IndexKeyRecord(
        check=key.check(),
        wrapped=(wrap_data_key(key.secret, certificate),),
        stored=key.to_base64() if stored else None,
    )


def backup_index_key(record: IndexKeyRecord, configured: IndexKey | None, where: str) -> IndexKey:
    """The index key a backup host uses with the repository ``where`` names.

    Raises ConfigError (one sentence, before anything is written) when the
    configured key is not the repository's, or none is configured and the
    repository keeps none; IntegrityError when the stored key is damaged."""
    if configured is not None:
        if configured.check() != record.check:
            raise ConfigError(
                f"spec.encryption.indexKey is not the index key of {where}: configure the key"
                " the repository was created with"
            )
        return configured
    if record.stored is None:
        raise ConfigError(
            f"{where} keeps no index key of its own: configure spec.encryption.indexKey"
            " with the key it was created with"
        )
    key = IndexKey.from_base64(record.stored, where=f"the index key record of {where}")
    if key.check() != record.check:
        # Backing up with it would store chunks no restore can find.
        raise IntegrityError(
            f"the index key record of {where} is damaged: its stored key does not match its check"
        )
    return key


def unwrap_index_key(record: IndexKeyRecord, ring: KeyRing, where: str) -> IndexKey:
    """The index key, unwrapped with a private key (what a restore uses).

    Raises WrongKeyError when no key of ``ring`` is one it is wrapped to."""
    for wrapped in record.wrapped:
        private = ring.find(wrapped.public_key_sha256)
        if private is not None:
            key = IndexKey(unwrap_data_key(wrapped, private))
            if key.check() != record.check:
                raise IntegrityError(f"the index key record of {where} is damaged")
            return key
    thumbprints = ", ".join(w.thumbprint for w in record.wrapped)
    raise WrongKeyError(
        f"the index key of {where} is wrapped to certificate {thumbprints}, and no private"
        " key given belongs to it"
    )


def rewrapped_keys(
    wrapped: tuple[WrappedKey, ...], ring: KeyRing, certificate: Certificate, what: str
) -> tuple[WrappedKey, ...] | None:
    """The key of ``wrapped`` wrapped to ``certificate`` instead, as re-wrapping a
    format 1 manifest does; None when it already is."""
    if any(w.public_key_sha256 == certificate.public_key_sha256 for w in wrapped):
        return None
    for item in wrapped:
        private = ring.find(item.public_key_sha256)
        if private is not None:
            secret = unwrap_data_key(item, private)
            return (wrap_data_key(secret, certificate),)
    raise WrongKeyError(
        f"{what} is wrapped to certificate {', '.join(w.thumbprint for w in wrapped)}, and no"
        " key in spec.encryption.previousKeys belongs to it"
    )
