"""Which backups retention deletes: a pure function of the backups, the policy and now."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from reconciler.repository.records import BackupRecord, BackupStatus
from reconciler.spec.model import Retention
from reconciler.timeutil import describe_age


@dataclass(frozen=True)
class Prunable:
    backup: BackupRecord
    age_hours: float
    reason: str


def select_prunable(
    backups: tuple[BackupRecord, ...],
    retention: Retention,
    now: datetime,
    planned_success: bool = False,
) -> tuple[Prunable, ...]:
    """The backups retention deletes at ``now``, oldest first.

    A backup is deleted once it is more than ``days`` x 24 h old, except the
    newest Succeeded backup and the newest ``minBackups`` Succeeded ones.
    ``planned_success`` counts a backup about to be made at ``now`` as the
    newest Succeeded one (a plan assumes its backup.run succeeds). Running
    backups are never deleted; Corrupt ones never count as kept.

    A backup created after ``now`` (made on a host whose clock runs ahead, or
    seen by a ``--now`` dry run in the past) is younger than any limit, so it
    is never deleted for its age. It still is a Succeeded backup one can
    restore, so it counts among the newest ``minBackups`` like any other, by
    its creation time, as ``restic forget --keep-last`` and ``borg prune
    --keep-last`` count every snapshot whatever the clock says: ``minBackups``
    promises that many restorable backups remain, and it does remain."""
    limit = timedelta(days=retention.days)
    succeeded = sorted(
        (b for b in backups if b.status is BackupStatus.SUCCEEDED),
        key=lambda b: (b.created_at, b.id),
        reverse=True,
    )
    keep_count = max(retention.min_backups, 1) - (1 if planned_success else 0)
    protected = {b.id for b in succeeded[: max(keep_count, 0)]}
    prunable = []
    for backup in sorted(backups, key=lambda b: (b.created_at, b.id)):
        age = now - backup.created_at
        if backup.status is BackupStatus.RUNNING or backup.id in protected or age <= limit:
            continue
        hours = age.total_seconds() / 3600
        prunable.append(
            Prunable(
                backup,
                hours,
                f"{backup.status} backup {describe_age(hours)} old, older than"
                f" {retention.days} days",
            )
        )
    return tuple(prunable)
