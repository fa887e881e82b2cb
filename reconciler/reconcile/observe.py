"""Observe: read what a repository holds, without changing anything.

The number of objects read is constant in the number of backups when nothing
is amiss: the format marker, settings, catalog and lock, plus listings of the
backups folder and the repository root. With ``head_only`` even the bytes
read are: only the catalog's head (repository.catalog_head). Only an
interrupted run or a damaged catalog makes it read manifests.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from reconciler.reconcile.state import ObservedState
from reconciler.repository.lock import stale_reason
from reconciler.repository.store import Repository
from reconciler.repository.survey import temporary_items


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
    keys = _format_facts(repository)
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
                **keys,
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
        **keys,
    )


def _format_facts(repository: Repository) -> dict[str, Any]:
    """The format and, for format 2, the index key's check (one small read) and
    whether a reclaim is owed (one existence check)."""
    version = repository.format_version
    if version < 2:
        return {"format_version": version}
    record = repository.read_index_key()
    return {
        "format_version": version,
        "index_key_check": None if record is None else record.check,
        "index_key_stored": record is not None and record.stored is not None,
        "reclaim_due": repository.reclaim_due(),
    }
