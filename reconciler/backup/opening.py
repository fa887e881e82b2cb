"""Opening a backup's sources: the keys a backup needs, whatever its format.

A format 1 backup has one data key, wrapped in its manifest. A format 2
backup's chunks may lie in packs of many runs, each under its own data key
(``keys/data/<key id>.json``), and its chunk lists are under the index key,
which the private key unwraps from ``keys/index.json``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO

from reconciler.backup.chunked import DataKeys, open_chunked
from reconciler.backup.pipeline import BytesCallback, open_object
from reconciler.crypto.envelope import unwrap_data_key
from reconciler.crypto.keyring import KeyRing
from reconciler.dedup.keys import DerivedKeys
from reconciler.errors import IntegrityError, ObjectNotFoundError, WrongKeyError
from reconciler.repository.keyfiles import unwrap_index_key
from reconciler.repository.records import BackupRecord, SourceResult
from reconciler.repository.store import Repository


@dataclass(frozen=True)
class BackupKeys:
    """What opens one backup's sources: its data key (format 1), or the index
    key's derived keys and the data keys by id (format 2)."""

    data_key: bytes | None = None
    derived: DerivedKeys | None = None
    data_keys: DataKeys | None = None

    @contextmanager
    def open(
        self,
        repository: Repository,
        backup_id: str,
        result: SourceResult,
        on_bytes: BytesCallback | None = None,
    ) -> Iterator[BinaryIO]:
        """The source's plaintext stream, checked end to end when the block exits."""
        assert result.object is not None
        stored = repository.backup_object(backup_id, result.object.name)
        if result.chunked:
            assert self.derived is not None and self.data_keys is not None
            with open_chunked(
                repository, stored, result.object, self.derived, self.data_keys, on_bytes
            ) as plain:
                yield plain
        else:
            assert self.data_key is not None
            with open_object(stored, result.object, self.data_key, on_bytes) as plain:
                yield plain


def keys_for(
    repository: Repository, record: BackupRecord, ring: KeyRing, key_thumbprints: dict[str, str]
) -> BackupKeys:
    """The keys that open ``record``, unwrapped with ``ring``.

    Raises WrongKeyError naming the certificate needed when no key of the ring
    fits, IntegrityError when a key record is damaged or missing."""
    if not any(s.chunked for s in record.sources):
        return BackupKeys(data_key=data_key_for(record, ring, key_thumbprints))
    where = repository.description
    index_record = repository.read_index_key()
    if index_record is None:
        raise IntegrityError(f"{where} holds format 2 backups but no index key record")
    try:
        derived = unwrap_index_key(index_record, ring, where).derive()
    except WrongKeyError:
        needed = index_record.wrapped[0].thumbprint
        raise WrongKeyError(_no_key_given(record.id, needed, ring, key_thumbprints)) from None

    def unwrap(key_id: str) -> bytes:
        try:
            data_key_record = repository.read_data_key(key_id)
        except ObjectNotFoundError:
            raise IntegrityError(f"the data key {key_id} of {where} is missing") from None
        for wrapped in data_key_record.wrapped:
            private = ring.find(wrapped.public_key_sha256)
            if private is not None:
                return unwrap_data_key(wrapped, private)
        needed = ", ".join(w.thumbprint for w in data_key_record.wrapped)
        raise WrongKeyError(
            f"data key {key_id} of {where} was wrapped to certificate {needed}, and no key"
            f" given belongs to it; pass that certificate's private key with --key or --key-dir"
        )

    return BackupKeys(derived=derived, data_keys=DataKeys(unwrap))


def data_key_for(record: BackupRecord, ring: KeyRing, key_thumbprints: dict[str, str]) -> bytes:
    """Return a format 1 ``record``'s data key, unwrapped with the key of ``ring``
    it was wrapped to.

    The key is picked by public-key SHA-256. ``key_thumbprints`` maps public-key
    SHA-256 to certificate thumbprint (from the repository's key history) so the
    keys offered can be named. Raises WrongKeyError naming the certificate the
    backup needs when no key of the ring fits, IntegrityError when the manifest
    holds no wrapped key or the wrapped key is damaged."""
    wrapped = record.wrapped_key
    if wrapped is None:
        raise IntegrityError(f"the manifest of backup {record.id} holds no wrapped data key")
    key = ring.find(wrapped.public_key_sha256)
    if key is not None:
        return unwrap_data_key(wrapped, key)
    raise WrongKeyError(_no_key_given(record.id, wrapped.thumbprint, ring, key_thumbprints))


def _no_key_given(
    backup_id: str, needed: str, ring: KeyRing, key_thumbprints: dict[str, str]
) -> str:
    """Why no key of ``ring`` opens the backup: the certificate it needs and what each
    key offered belongs to."""
    offered = ", ".join(
        f"{k.path} belongs to certificate"
        f" {key_thumbprints.get(k.public_key_sha256, 'unknown to this repository')}"
        for k in ring.keys
    )
    # Files of a key folder that could not be loaded may be the one needed.
    skipped = "".join(f"; {reason}" for reason in ring.unusable)
    return (
        f"backup {backup_id} was encrypted to certificate {needed}, and no key"
        f" given belongs to it ({offered}); pass the private key of {needed}"
        f" with --key or --key-dir{skipped}"
    )
