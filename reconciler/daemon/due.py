"""When a configuration's next scheduled backup falls due, so the daemon can wake then."""

from __future__ import annotations

from datetime import datetime, timedelta

from reconciler.reconcile.schedule import scheduled_backup_due
from reconciler.repository.records import BackupRecord, BackupStatus
from reconciler.spec.model import Schedule


def next_due_time(
    schedule: Schedule, backups: tuple[BackupRecord, ...], now: datetime
) -> datetime | None:
    """The first moment after ``now`` at which the schedule asks for a backup,
    assuming nothing else happens until then; None when there is none (the
    schedule is off, or a backup is due already and the next tick runs it).

    Candidates are the two moments the schedule can change its mind: the newest
    Succeeded backup leaving the frequency window, and the retry time after a
    failed attempt. Each is checked with the planner's own rule."""
    if not schedule.enabled:
        return None
    finished = [b for b in backups if b.status is not BackupStatus.RUNNING and b.created_at <= now]
    candidates: list[datetime] = []
    succeeded = [b.created_at for b in finished if b.status is BackupStatus.SUCCEEDED]
    if succeeded:
        candidates.append(max(succeeded) + timedelta(hours=schedule.frequency_hours))
    if finished:
        last = max(finished, key=lambda b: (b.created_at, b.id))
        if last.status in (BackupStatus.FAILED, BackupStatus.PARTIALLY_SUCCEEDED):
            candidates.append(last.created_at + timedelta(minutes=schedule.retry_after_minutes))
    future = [c for c in candidates if c > now and scheduled_backup_due(schedule, backups, c)]
    return min(future, default=None)
