"""Observe: read what a repository holds, without changing anything.

The number of objects read is constant in the number of backups when nothing
is amiss: the format marker, settings, catalog and lock, plus listings of the
backups folder and the repository root. With ``head_only`` even the bytes
read are: only the catalog's head (repository.catalog_head). Only an
interrupted run or a damaged catalog makes it read manifests.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from reconciler.errors import IntegrityError, ObjectNotFoundError
from reconciler.repository.catalog_head import CatalogHead, ids_digest
from reconciler.repository.lock import LockHolder, read_lock, stale_reason
from reconciler.repository.records import (
    AppliedSettings,
    BackupRecord,
    BackupStatus,
    backup_dir,
    parse_backup_id,
)
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


@dataclass(frozen=True)
class ObservedState:
    location: str
    initialized: bool
    settings: AppliedSettings | None
    backups: tuple[BackupRecord, ...]
    """Committed backups (and ones a live process is writing), oldest first."""
    cleanup: tuple[CleanupItem, ...]
    drift: tuple[DriftItem, ...]
    lock: LockHolder | None
    head: CatalogHead | None = None
    """Set when only the catalog's head was read: then ``backups`` holds just
    the newest backups, and the head tells about the others (a plan may be
    made from that alone only where reconcile.head.head_suffices says so)."""

    @classmethod
    def empty(cls, location: str) -> ObservedState:
        return cls(location, False, None, (), (), (), None)


def observe(
    repository: Repository,
    real_now: datetime,
    own_lock: str | None = None,
    head_only: bool = False,
) -> ObservedState:
    """The state of ``repository``. Raises StorageError / IntegrityError when unreadable.

    ``own_lock`` is the nonce of the lock this process holds (apply observes
    under its lock): then no other writer can be alive, and what a Running
    backup left is an interrupted run's, to clean up.

    ``head_only``: read just the catalog's head when it shows nothing amiss
    (no Running backup, no unfinished prune, the backup folders on the
    storage exactly those it lists); the result then has ``head`` set."""
    storage = repository.storage
    if not storage.root_exists() or not repository.is_initialized():
        return ObservedState.empty(storage.description)
    settings = repository.read_settings()
    lock = read_lock(storage)
    writer_alive = (
        lock is not None and lock.nonce != own_lock and stale_reason(lock, real_now) is None
    )
    if head_only:
        # The head before the listing, as the catalog before it below: a backup
        # committed in between shows as a folder the head does not list, and
        # the whole catalog is read instead.
        head = repository.read_catalog_head()
        if (
            head is not None
            and head.tail is not None
            and head.running == 0
            and head.pending_deletes == 0
            and ids_digest(repository.backup_ids_on_storage()) == head.ids_sha256
        ):
            return ObservedState(
                location=storage.description,
                initialized=True,
                settings=settings,
                backups=head.tail,
                cleanup=tuple(_temporary_objects(repository) if not writer_alive else ()),
                drift=(),
                lock=lock,
                head=head,
            )
    catalog = repository.read_catalog()
    on_storage = set(repository.backup_ids_on_storage())
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
        cleanup.extend(_temporary_objects(repository))
    return ObservedState(
        location=storage.description,
        initialized=True,
        settings=settings,
        backups=tuple(sorted(backups, key=lambda b: (b.created_at, b.id))),
        cleanup=tuple(cleanup),
        drift=tuple(drift),
        lock=lock,
    )


def _temporary_objects(repository: Repository) -> list[CleanupItem]:
    return [
        CleanupItem(e.name, "a temporary object left by an interrupted write")
        for e in repository.storage.list_dir("")
        if TEMP_MARKER in e.name
    ]


def _interrupted(
    repository: Repository, record: BackupRecord, backups: list[BackupRecord]
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
    repository: Repository,
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


def _committed_manifest(repository: Repository, backup_id: str) -> BackupRecord | None:
    try:
        return repository.read_manifest(backup_id)
    except (ObjectNotFoundError, IntegrityError):
        return None
