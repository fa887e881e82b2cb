"""Which backups periodic verification checks: a pure function of backups, policy and now."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from reconciler.repository.records import VERIFIED_STATUSES, BackupRecord
from reconciler.spec.model import Verification
from reconciler.timeutil import describe_age

# Corrupt backups are not re-checked on a schedule (they stay Corrupt until a
# full `backupctl verify` with the key proves them intact); Failed ones hold
# no data and Running ones are still being written.


@dataclass(frozen=True)
class Verifiable:
    """A backup ``backup.verify`` checks, and why it is due."""

    backup: BackupRecord
    reason: str


def select_verifiable(
    backups: tuple[BackupRecord, ...],
    verification: Verification | None,
    now: datetime,
    skip: frozenset[str] = frozenset(),
) -> tuple[Verifiable, ...]:
    """Return the backups not verified within ``frequencyDays`` at ``now``, oldest first.

    A backup never verified counts from its creation (it was checked as it was
    written), so a fresh backup is not due at once. Like the schedule, a check
    made exactly ``frequencyDays`` ago no longer counts. Backups in ``skip``
    (pruned by the same plan) and future-dated ones are left out; returns ()
    when ``verification`` is None."""
    if verification is None:
        return ()
    limit = timedelta(days=verification.frequency_days)
    due: list[Verifiable] = []
    for backup in sorted(backups, key=lambda b: (b.created_at, b.id)):
        if backup.status not in VERIFIED_STATUSES or backup.id in skip:
            continue
        since = backup.verified_at or backup.created_at
        if since > now or now - since < limit:
            continue
        age = describe_age((now - since).total_seconds() / 3600)
        if backup.verified_at is None:
            reason = f"never verified, created {age} ago"
        else:
            reason = f"last verified {age} ago"
        due.append(Verifiable(backup, reason))
    return tuple(due)
