"""When a backup is due: pure functions of the desired schedule, the backups and now.

The planner asks whether a backup is due at a moment; the daemon asks when the
answer can next change, so that it wakes then. Both answers come from the
helpers below, so the two can never disagree on the rule."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from reconciler.repository.records import BackupRecord, BackupStatus
from reconciler.spec.model import Schedule
from reconciler.timeutil import format_time

_RETRIED_STATUSES = (BackupStatus.FAILED, BackupStatus.PARTIALLY_SUCCEEDED)
"""A last attempt that ended so is retried after retryAfterMinutes."""


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
    finished = _finished(backups, now)
    newest = _newest_succeeded(finished)
    if newest is not None and now < _window_end(schedule, newest):
        return None
    last = _last_attempt(finished)
    if last is None:
        return Due("no backup exists yet", "scheduled")
    retry_at = _retry_time(schedule, last)
    if retry_at is not None:
        if now < retry_at:
            return None
        return Due(
            f"the last attempt ({last.id}) ended {last.status}; retrying after"
            f" {schedule.retry_after_minutes} minutes",
            "retry",
        )
    if newest is None:
        return Due("no Succeeded backup exists", "scheduled")
    return Due(
        f"no Succeeded backup in the last {schedule.frequency_hours} hours"
        f" (the newest is from {format_time(newest)})",
        "scheduled",
    )


def schedule_turning_points(
    schedule: Schedule, backups: tuple[BackupRecord, ...], now: datetime
) -> tuple[datetime, ...]:
    """The moments at which ``scheduled_backup_due`` may change its answer, if no
    backup is made meanwhile: the newest Succeeded backup leaving the frequency
    window, and the retry time after a failed last attempt. Empty when the
    schedule is off."""
    if not schedule.enabled:
        return ()
    finished = _finished(backups, now)
    newest = _newest_succeeded(finished)
    last = _last_attempt(finished)
    moments = [
        None if newest is None else _window_end(schedule, newest),
        None if last is None else _retry_time(schedule, last),
    ]
    return tuple(m for m in moments if m is not None)


def next_due_time(
    schedule: Schedule, backups: tuple[BackupRecord, ...], now: datetime
) -> datetime | None:
    """The first moment after ``now`` at which the schedule asks for a backup,
    assuming nothing else happens until then; None when there is none (the
    schedule is off, or a backup is due already and the next tick runs it).

    What the daemon wakes for and what the status page shows as the next
    backup: the first future turning point at which ``scheduled_backup_due``
    says "due", so neither can disagree with the planner."""
    due = [
        moment
        for moment in schedule_turning_points(schedule, backups, now)
        if moment > now and scheduled_backup_due(schedule, backups, moment)
    ]
    return min(due, default=None)


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


def backup_due(
    schedule: Schedule,
    trigger: str,
    backups: tuple[BackupRecord, ...],
    last_trigger: str | None,
    now: datetime,
) -> Due | None:
    """A Due when the schedule or a changed ``spec.trigger`` asks for a backup at
    ``now``; a changed trigger names the trigger recorded when both do."""
    scheduled = scheduled_backup_due(schedule, backups, now)
    requested = trigger_due(trigger, last_trigger)
    if scheduled and requested:
        return Due(f"{scheduled.reason}; {requested.reason}", requested.trigger)
    return scheduled or requested


def _finished(backups: tuple[BackupRecord, ...], now: datetime) -> list[BackupRecord]:
    """The attempts the schedule counts: not Running, not dated after ``now``."""
    return [b for b in backups if b.status is not BackupStatus.RUNNING and b.created_at <= now]


def _newest_succeeded(finished: list[BackupRecord]) -> datetime | None:
    return max((b.created_at for b in finished if b.status is BackupStatus.SUCCEEDED), default=None)


def _last_attempt(finished: list[BackupRecord]) -> BackupRecord | None:
    return max(finished, key=lambda b: b.created_at, default=None)


def _window_end(schedule: Schedule, newest_succeeded: datetime) -> datetime:
    """When the newest Succeeded backup stops counting (exactly frequencyHours later)."""
    return newest_succeeded + timedelta(hours=schedule.frequency_hours)


def _retry_time(schedule: Schedule, last: BackupRecord) -> datetime | None:
    """When a failed last attempt may be retried; None when it did not fail."""
    if last.status not in _RETRIED_STATUSES:
        return None
    return last.created_at + timedelta(minutes=schedule.retry_after_minutes)
