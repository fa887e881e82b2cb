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

from reconciler.repository.catalog_head import CatalogHead
from reconciler.repository.lock import LockHolder, stale_reason
from reconciler.repository.records import AppliedSettings, BackupRecord
from reconciler.repository.store import Repository
from reconciler.repository.survey import CleanupItem, DriftItem, temporary_items


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
    if not repository.exists():
        return ObservedState.empty(storage.description)
    settings = repository.read_settings()
    lock = repository.read_lock()
    writer_alive = (
        lock is not None and lock.nonce != own_lock and stale_reason(lock, real_now) is None
    )
    if head_only:
        # The head before the listing, as the catalog before it below: a backup
        # committed in between shows as a folder the head does not list, and
        # the whole catalog is read instead.
        head = repository.read_settled_head()
        if head is not None and head.tail is not None:
            return ObservedState(
                location=storage.description,
                initialized=True,
                settings=settings,
                backups=head.tail,
                cleanup=tuple(temporary_items(repository.temporary_objects()))
                if not writer_alive
                else (),
                drift=(),
                lock=lock,
                head=head,
            )
    found = repository.survey(writer_alive)
    return ObservedState(
        location=storage.description,
        initialized=True,
        settings=settings,
        backups=found.backups,
        cleanup=found.cleanup,
        drift=found.drift,
        lock=lock,
    )
