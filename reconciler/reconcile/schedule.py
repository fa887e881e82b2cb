"""When a backup is due: pure functions of the desired schedule, the backups and now."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from reconciler.repository.records import BackupRecord, BackupStatus
from reconciler.spec.model import Schedule
from reconciler.timeutil import format_time


@dataclass(frozen=True)
class Due:
    """Why a backup should run now, and what to record as its trigger."""

    reason: str
    trigger: str


def scheduled_backup_due(
    schedule: Schedule, backups: tuple[BackupRecord, ...], now: datetime
) -> Due | None:
    """A Due when the schedule asks for a backup at ``now``, else None.

    A backup is due when no Succeeded backup was created in the last
    ``frequencyHours`` (one created exactly that long ago no longer counts);
    after a failed attempt, not before ``retryAfterMinutes`` have passed.

    A backup created after ``now`` (made on a host whose clock runs ahead, or
    seen by a ``--now`` dry run in the past) was not created in the last
    ``frequencyHours``, and is left out entirely: it neither makes a backup
    unneeded nor, when it failed, delays one for a retry. The schedule exists
    so that a backup no older than ``frequencyHours`` by this host's clock
    always exists; a skewed clock should cost at most one extra backup, never
    a gap, and a timestamp years ahead (a clock set wrong once) must not
    silence the schedule until that date. Retention keeps such a backup
    (see ``select_prunable``)."""
    if not schedule.enabled:
        return None
    window = timedelta(hours=schedule.frequency_hours)
    finished = [b for b in backups if b.status is not BackupStatus.RUNNING and b.created_at <= now]
    if any(b.status is BackupStatus.SUCCEEDED and now - b.created_at < window for b in finished):
        return None
    if not finished:
        return Due("no backup exists yet", "scheduled")
    last = max(finished, key=lambda b: b.created_at)
    if last.status in (BackupStatus.FAILED, BackupStatus.PARTIALLY_SUCCEEDED):
        retry_at = last.created_at + timedelta(minutes=schedule.retry_after_minutes)
        if now < retry_at:
            return None
        return Due(
            f"the last attempt ({last.id}) ended {last.status}; retrying after"
            f" {schedule.retry_after_minutes} minutes",
            "retry",
        )
    succeeded = [b for b in finished if b.status is BackupStatus.SUCCEEDED]
    if not succeeded:
        return Due("no Succeeded backup exists", "scheduled")
    newest = max(b.created_at for b in succeeded)
    return Due(
        f"no Succeeded backup in the last {schedule.frequency_hours} hours"
        f" (the newest is from {format_time(newest)})",
        "scheduled",
    )


def trigger_due(desired: str, last_applied: str | None) -> Due | None:
    """A Due when the operator changed ``spec.trigger`` since it was last applied.

    ``last_applied`` is None before the first apply, where an empty trigger
    requests nothing extra."""
    previous = last_applied or ""
    if desired == previous:
        return None
    if last_applied is None:
        return Due(f"on-demand backup requested (trigger {desired!r})", "on-demand")
    return Due(f"trigger changed from {previous!r} to {desired!r}", "on-demand")
