"""Observe: read what a repository holds, without changing anything.

The cost is constant in the number of backups when nothing is amiss: the
format marker, settings, catalog and lock, plus one listing of the repository
root. Only an interrupted run or a damaged catalog makes it read manifests.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from reconciler.errors import IntegrityError, ObjectNotFoundError
from reconciler.repository.lock import LockHolder, read_lock, stale_reason
from reconciler.repository.records import AppliedSettings, BackupRecord, BackupStatus, backup_dir
from reconciler.repository.store import Repository
from reconciler.storage.base import TEMP_MARKER


@dataclass(frozen=True)
class CleanupItem:
    """Something an interrupted run left behind, and what cleanup does about it."""

    path: str
    reason: str
    backup_id: str | None = None
    committed: BackupRecord | None = None
    """A backup whose manifest was written but which the catalog misses: re-add it."""


@dataclass(frozen=True)
class ObservedState:
    location: str
    initialized: bool
    settings: AppliedSettings | None
    backups: tuple[BackupRecord, ...]
    """Committed backups (and ones a live process is writing), oldest first."""
    cleanup: tuple[CleanupItem, ...]
    catalog_problem: str | None
    lock: LockHolder | None

    @classmethod
    def empty(cls, location: str) -> ObservedState:
        return cls(location, False, None, (), (), None, None)


def observe(repository: Repository, real_now: datetime) -> ObservedState:
    """The state of ``repository``. Raises StorageError / IntegrityError when unreadable."""
    storage = repository.storage
    if not storage.root_exists() or not repository.is_initialized():
        return ObservedState.empty(storage.description)
    settings = repository.read_settings()
    catalog = repository.read_catalog()
    lock = read_lock(storage)
    writer_alive = lock is not None and stale_reason(lock, real_now) is None
    backups: list[BackupRecord] = []
    cleanup: list[CleanupItem] = []
    for record in catalog.backups:
        if record.status is not BackupStatus.RUNNING or writer_alive:
            backups.append(record)
            continue
        committed = _committed_manifest(repository, record.id)
        if committed is not None:
            backups.append(committed)
            cleanup.append(
                CleanupItem(
                    backup_dir(record.id),
                    f"backup {record.id} was committed but the catalog still lists it as Running",
                    record.id,
                    committed,
                )
            )
        else:
            cleanup.append(
                CleanupItem(
                    backup_dir(record.id),
                    f"backup {record.id} was interrupted before it was committed",
                    record.id,
                )
            )
    cleanup.extend(
        CleanupItem(backup_dir(i), f"the prune of backup {i} was interrupted", i)
        for i in catalog.pending_deletes
    )
    if catalog.damaged is not None:
        cleanup.extend(_uncommitted_folders(repository, catalog.backups, writer_alive))
        cleanup.append(CleanupItem("catalog.json", f"{catalog.damaged}; it will be rebuilt"))
    cleanup.extend(
        CleanupItem(e.name, "a temporary object left by an interrupted write")
        for e in storage.list_dir("")
        if TEMP_MARKER in e.name and not writer_alive
    )
    return ObservedState(
        location=storage.description,
        initialized=True,
        settings=settings,
        backups=tuple(backups),
        cleanup=tuple(cleanup),
        catalog_problem=catalog.damaged,
        lock=lock,
    )


def _committed_manifest(repository: Repository, backup_id: str) -> BackupRecord | None:
    try:
        return repository.read_manifest(backup_id)
    except (ObjectNotFoundError, IntegrityError):
        return None


def _uncommitted_folders(
    repository: Repository, known: tuple[BackupRecord, ...], writer_alive: bool
) -> list[CleanupItem]:
    if writer_alive:
        return []
    committed = {b.id for b in known}
    return [
        CleanupItem(backup_dir(i), f"the folder of backup {i} holds no manifest", i)
        for i in repository.backup_ids_on_storage()
        if i not in committed
    ]
