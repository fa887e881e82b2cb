"""Re-wrapping: move older backups to the current certificate without re-encrypting them.

Only the small wrapped data key in each manifest changes: it is unwrapped with
the previous private key and wrapped again to the current certificate, and the
manifest is rewritten atomically with its new ``wrappedKey`` and
``keyThumbprint``. The encrypted objects are never read or written. Each
backup is committed on its own, so an interruption loses nothing: a manifest
already on the current certificate is recognised and only its catalog entry is
brought up to date.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from reconciler.crypto.certificates import Certificate
from reconciler.crypto.envelope import unwrap_data_key, wrap_data_key
from reconciler.crypto.keyring import KeyRing
from reconciler.errors import IntegrityError, ObjectNotFoundError, WrongKeyError
from reconciler.failpoints import failpoint
from reconciler.repository.keyfiles import rewrapped_keys
from reconciler.repository.records import BackupRecord
from reconciler.repository.store import Repository


@dataclass
class RewrapReport:
    """What a run of ``rewrap_backups`` did, backup by backup."""

    rewrapped: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    """Found on the current certificate already (an interrupted run did them)."""
    gone: list[str] = field(default_factory=list)
    """No longer in the repository (pruned since the plan was made)."""
    failures: list[str] = field(default_factory=list)
    """One sentence per backup that could not be re-wrapped."""


def rewrap_backups(
    repository: Repository,
    backup_ids: Sequence[str],
    ring: KeyRing,
    certificate: Certificate,
) -> RewrapReport:
    """Re-wrap each listed backup's data key to ``certificate``; return the report.

    A backup that fails (no previous key fits, damaged manifest) is reported
    and the others still go ahead. The catalog is updated once at the end for
    every manifest now on ``certificate``. Raises StorageError when the storage
    fails; manifests written until then stay valid and a later run resumes."""
    report = RewrapReport()
    moved: list[BackupRecord] = []
    if repository.format_version >= 2:
        # Chunks of a kept backup may be under any run's data key, and its
        # chunk lists under the index key: every one of them moves first.
        report.failures.extend(rewrap_repository_keys(repository, ring, certificate))
        if report.failures:
            return report
    try:
        for backup_id in backup_ids:
            try:
                record, changed = rewrap_backup(repository, backup_id, ring, certificate)
            except ObjectNotFoundError:
                report.gone.append(backup_id)
                continue
            except (IntegrityError, WrongKeyError) as exc:
                report.failures.append(str(exc))
                continue
            (report.rewrapped if changed else report.already).append(backup_id)
            moved.append(record)
    finally:
        if moved:
            repository.store_summaries(moved)
    return report


def rewrap_backup(
    repository: Repository, backup_id: str, ring: KeyRing, certificate: Certificate
) -> tuple[BackupRecord, bool]:
    """Re-wrap one backup's data key to ``certificate`` and commit its manifest.

    Returns the manifest now stored and whether it was rewritten (False: it
    was already wrapped to ``certificate``'s public key). Raises
    ObjectNotFoundError when the backup has no manifest, IntegrityError when
    the manifest or its wrapped key is damaged, WrongKeyError when no key of
    ``ring`` is the one the data key is wrapped to."""
    record = repository.read_manifest(backup_id)
    wrapped = record.wrapped_key
    if wrapped is None and any(s.chunked for s in record.sources):
        # Its keys live in keys/ (rewrap_repository_keys moved them); only the
        # certificate the manifest names changes.
        if record.key_thumbprint == certificate.thumbprint:
            return record, False
        moved = replace(record, key_thumbprint=certificate.thumbprint)
        repository.store_rewrapped(moved)
        failpoint("rewrap-manifest")  # committed, the catalog not yet updated
        return moved, True
    if wrapped is None:
        raise IntegrityError(f"the manifest of backup {backup_id} holds no wrapped data key")
    if wrapped.public_key_sha256 == certificate.public_key_sha256:
        return record, False
    key = ring.find(wrapped.public_key_sha256)
    if key is None:
        raise WrongKeyError(
            f"backup {backup_id} is wrapped to certificate {wrapped.thumbprint}, and no key in"
            " spec.encryption.previousKeys belongs to it"
        )
    data_key = unwrap_data_key(wrapped, key)
    rewrapped = replace(
        record,
        wrapped_key=wrap_data_key(data_key, certificate),
        key_thumbprint=certificate.thumbprint,
    )
    repository.store_rewrapped(rewrapped)
    failpoint("rewrap-manifest")  # committed, the catalog not yet updated
    return rewrapped, True


def rewrap_repository_keys(
    repository: Repository, ring: KeyRing, certificate: Certificate
) -> list[str]:
    """Wrap the index key and every data key record of a format 2 repository to
    ``certificate``; return one sentence per key that could not be."""
    failures: list[str] = []
    index_record = repository.read_index_key()
    if index_record is not None:
        try:
            wrapped = rewrapped_keys(
                index_record.wrapped,
                ring,
                certificate,
                f"the index key of {repository.description}",
            )
        except (WrongKeyError, IntegrityError) as exc:
            failures.append(str(exc))
        else:
            if wrapped is not None:
                repository.write_index_key(replace(index_record, wrapped=wrapped))
    for key_id in repository.data_key_ids():
        try:
            record = repository.read_data_key(key_id)
            wrapped = rewrapped_keys(record.wrapped, ring, certificate, f"data key {key_id}")
        except (WrongKeyError, IntegrityError) as exc:
            failures.append(str(exc))
            continue
        if wrapped is not None:
            repository.write_data_key(replace(record, wrapped=wrapped))
            failpoint("rewrap-data-key")
    return failures
