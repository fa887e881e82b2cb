"""Leftovers and drift: what a repository holds besides its committed, listed backups.

An interrupted run leaves things behind (a Running catalog entry, a backup
folder without manifest, a half-finished prune, temporary objects), and
someone outside backupctl may change the storage (a folder deleted by hand, a
damaged catalog). A survey finds both; ``Repository.clean_up`` and
``Repository.repair_catalog`` act on what it found.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from reconciler.errors import IntegrityError, ObjectNotFoundError
from reconciler.repository.catalog import Catalog
from reconciler.repository.layout import CATALOG_KEY, backup_dir, parse_backup_id
from reconciler.repository.records import BackupRecord, BackupStatus


@dataclass(frozen=True)
class CleanupItem:
    """Something an interrupted run left behind, and what cleanup does about it."""

    path: str
    """Where it is, relative to the repository (shown to the user)."""
    reason: str
    backup_id: str | None = None
    committed: BackupRecord | None = None
    """A backup whose manifest was written but which the catalog misses: re-add it."""


@dataclass(frozen=True)
class DriftItem:
    """A difference between the catalog and the backups on the storage, made
    outside backupctl (a folder deleted by hand, a damaged catalog), and how
    catalog.repair corrects it."""

    reason: str
    backup_id: str | None = None
    add: BackupRecord | None = None
    """A committed backup the catalog misses: it is entered again."""
    remove: bool = False
    """A catalog entry whose backup is gone from the storage: it is dropped."""

    @property
    def path(self) -> str:
        """What it is about, relative to the repository (shown to the user)."""
        return backup_dir(self.backup_id) if self.backup_id else CATALOG_KEY


@dataclass(frozen=True)
class Survey:
    backups: tuple[BackupRecord, ...]
    """Committed backups (and ones a live process is writing), oldest first."""
    cleanup: tuple[CleanupItem, ...]
    drift: tuple[DriftItem, ...]


class ManifestReader(Protocol):
    """What a survey needs of the repository: its name and its manifests."""

    name: str

    def read_manifest(self, backup_id: str) -> BackupRecord: ...


def survey(
    repository: ManifestReader,
    catalog: Catalog,
    on_storage: set[str],
    temporary: list[str],
    writer_alive: bool,
) -> Survey:
    """Sort what ``catalog`` lists and the backup folders ``on_storage`` hold.

    While another writer is alive, what it is writing is not a leftover."""
    backups: list[BackupRecord] = []
    cleanup: list[CleanupItem] = []
    drift: list[DriftItem] = []
    if catalog.damaged is not None:
        drift.append(
            DriftItem(f"{catalog.damaged}; it is rebuilt from {len(catalog.backups)} manifests")
        )
    for record in catalog.backups:
        if record.status is BackupStatus.RUNNING and not writer_alive:
            cleanup.append(_interrupted(repository, record, backups))
        elif record.id not in on_storage and record.status is not BackupStatus.RUNNING:
            drift.append(
                DriftItem(
                    f"backup {record.id} is in the catalog but its data is missing;"
                    " it is removed from the catalog",
                    record.id,
                    remove=True,
                )
            )
        else:
            backups.append(record)
    cleanup.extend(
        CleanupItem(backup_dir(i), f"the prune of backup {i} was interrupted", i)
        for i in catalog.pending_deletes
    )
    known = {b.id for b in catalog.backups} | set(catalog.pending_deletes)
    if not writer_alive:
        for backup_id in sorted(on_storage - known):
            _unlisted(repository, backup_id, backups, cleanup, drift)
        cleanup.extend(temporary_items(temporary))
    return Survey(
        backups=tuple(sorted(backups, key=lambda b: (b.created_at, b.id))),
        cleanup=tuple(cleanup),
        drift=tuple(drift),
    )


def temporary_items(names: list[str]) -> list[CleanupItem]:
    return [CleanupItem(name, "a temporary object left by an interrupted write") for name in names]


def _interrupted(
    repository: ManifestReader, record: BackupRecord, backups: list[BackupRecord]
) -> CleanupItem:
    committed = _committed_manifest(repository, record.id)
    if committed is None:
        return CleanupItem(
            backup_dir(record.id),
            f"backup {record.id} was interrupted before it was committed",
            record.id,
        )
    backups.append(committed)
    return CleanupItem(
        backup_dir(record.id),
        f"backup {record.id} was committed but the catalog still lists it as Running",
        record.id,
        committed,
    )


def _unlisted(
    repository: ManifestReader,
    backup_id: str,
    backups: list[BackupRecord],
    cleanup: list[CleanupItem],
    drift: list[DriftItem],
) -> None:
    """Sort a backup folder the catalog does not know into drift or cleanup.

    Folders whose names are not backup ids are not ours and are left alone."""
    created_at = parse_backup_id(backup_id)
    if created_at is None:
        return
    try:
        committed: BackupRecord | None = repository.read_manifest(backup_id)
    except ObjectNotFoundError:
        committed = None
    except IntegrityError as exc:
        # Never delete a backup because its manifest is damaged: list it as
        # Corrupt, so an operator sees it and retention eventually removes it.
        committed = _corrupt_placeholder(repository.name, backup_id, created_at, str(exc))
    if committed is None:
        cleanup.append(
            CleanupItem(
                backup_dir(backup_id),
                f"the folder of backup {backup_id} holds no manifest",
                backup_id,
            )
        )
        return
    backups.append(committed)
    as_corrupt = " as Corrupt" if committed.status is BackupStatus.CORRUPT else ""
    drift.append(
        DriftItem(
            f"backup {backup_id} is on the storage but missing from the catalog;"
            f" it is entered again{as_corrupt}",
            backup_id,
            add=committed,
        )
    )


def _corrupt_placeholder(
    configuration: str, backup_id: str, created_at: datetime, problem: str
) -> BackupRecord:
    return BackupRecord(
        id=backup_id,
        configuration=configuration,
        status=BackupStatus.CORRUPT,
        created_at=created_at,
        started_at=created_at,
        completed_at=None,
        trigger="",
        key_thumbprint="",
        sources=(),
        verification_error=problem,
    )


def _committed_manifest(repository: ManifestReader, backup_id: str) -> BackupRecord | None:
    try:
        return repository.read_manifest(backup_id)
    except (ObjectNotFoundError, IntegrityError):
        return None
