"""``unlock``: break a repository lock left by a dead process.

A lock is broken only when the caller names it by its nonce (or forces), and
only if it is still the same lock when it is deleted. Two steps, so that a
caller can show the lock and ask for its nonce in between: find_lock, then
break_lock."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from reconciler.reconcile.prepared import prepare
from reconciler.repository.lock import LockHolder
from reconciler.repository.store import Repository
from reconciler.spec.model import BackupConfiguration


@dataclass(frozen=True)
class FoundLock:
    """A configuration's repository lock as read, with the repository it locks."""

    configuration: str
    repository: Repository
    holder: LockHolder | None
    """None when the repository is not locked."""


class UnlockOutcome(StrEnum):
    NOT_LOCKED = "not-locked"
    BROKEN = "broken"
    WRONG_NONCE = "wrong-nonce"
    """Not forced, and the nonce given is not the lock's: nothing was broken."""
    CHANGED_HANDS = "changed-hands"
    """Another holder took the lock meanwhile: nothing was broken."""


@dataclass(frozen=True)
class UnlockReport:
    configuration: str
    outcome: UnlockOutcome
    holder: LockHolder | None = None
    """The lock as found (when BROKEN, the one broken)."""
    current: LockHolder | None = None
    """When CHANGED_HANDS, the lock's new holder."""


def find_lock(config: BackupConfiguration) -> FoundLock:
    """Return who holds the configuration's repository lock.

    Raises ConfigError (secrets) or StorageError."""
    repository = prepare(config).repository
    return FoundLock(config.name, repository, repository.read_lock())


def break_lock(found: FoundLock, nonce: str | None, force: bool) -> UnlockReport:
    """Break the lock ``found`` when ``nonce`` is its nonce or ``force``; return
    what happened. Raises StorageError when the storage fails."""
    seen = found.holder
    if seen is None:
        return UnlockReport(found.configuration, UnlockOutcome.NOT_LOCKED)
    if not force and nonce != seen.nonce:
        return UnlockReport(found.configuration, UnlockOutcome.WRONG_NONCE, seen)
    current = found.repository.break_lock(seen)
    if current is not None:
        return UnlockReport(found.configuration, UnlockOutcome.CHANGED_HANDS, seen, current)
    return UnlockReport(found.configuration, UnlockOutcome.BROKEN, seen)
