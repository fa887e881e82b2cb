"""When a configuration's next scheduled backup falls due, so the daemon can wake then."""

from __future__ import annotations

from datetime import datetime

from reconciler.reconcile.policy.schedule import schedule_turning_points, scheduled_backup_due
from reconciler.repository.records import BackupRecord
from reconciler.spec.model import Schedule


def next_due_time(
    schedule: Schedule, backups: tuple[BackupRecord, ...], now: datetime
) -> datetime | None:
    """The first moment after ``now`` at which the schedule asks for a backup,
    assuming nothing else happens until then; None when there is none (the
    schedule is off, or a backup is due already and the next tick runs it).

    The schedule rule (reconcile.policy.schedule) owns both the moments at
    which its answer can change and the answer itself; this only picks the
    first future moment at which that answer is "due"."""
    due = [
        moment
        for moment in schedule_turning_points(schedule, backups, now)
        if moment > now and scheduled_backup_due(schedule, backups, moment)
    ]
    return min(due, default=None)
