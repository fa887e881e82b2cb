"""When a backup is due (reconciler.reconcile.policy.schedule): pure functions over records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.reconcile.policy.schedule import (
    next_due_time,
    scheduled_backup_due,
    trigger_due,
)
from reconciler.repository.records import BackupRecord, BackupStatus
from reconciler.spec.model import Schedule

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
THUMBPRINT = "3945B02E1AAD377F4DB189914E1BAB1BC267C0DA"
DEFAULT = Schedule(enabled=True, frequency_hours=12, retry_after_minutes=30)

_counter = 0


def backup(
    status: BackupStatus | str = BackupStatus.SUCCEEDED,
    *,
    age: timedelta,
    now: datetime = NOW,
) -> BackupRecord:
    """A backup record created ``age`` before ``now``, with the given status."""
    global _counter
    _counter += 1
    created = now - age
    status = BackupStatus(status)
    return BackupRecord(
        id=f"{created:%Y%m%dT%H%M%SZ}-{_counter:06x}",
        configuration="region-west",
        status=status,
        created_at=created,
        started_at=created,
        completed_at=None if status is BackupStatus.RUNNING else created + timedelta(minutes=2),
        trigger="scheduled",
        key_thumbprint=THUMBPRINT,
        sources=(),
    )


def hours(n: float) -> timedelta:
    return timedelta(hours=n)


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


# ------------------------------------------------------------------ scheduled backups


def test_a_backup_is_due_when_there_is_no_backup_at_all() -> None:
    due = scheduled_backup_due(DEFAULT, (), NOW)
    assert due is not None
    assert due.trigger == "scheduled"
    assert due.reason == "no backup exists yet"


def test_no_backup_is_due_while_a_succeeded_backup_is_younger_than_the_frequency() -> None:
    backups = (backup(age=hours(11) + minutes(59)),)
    assert scheduled_backup_due(DEFAULT, backups, NOW) is None


def test_a_backup_is_due_when_the_newest_succeeded_is_exactly_frequency_hours_old() -> None:
    backups = (backup(age=hours(12)),)
    due = scheduled_backup_due(DEFAULT, backups, NOW)
    assert due is not None
    assert due.trigger == "scheduled"
    assert due.reason == (
        "no Succeeded backup in the last 12 hours (the newest is from 2026-11-25T00:00:00Z)"
    )


def test_the_frequency_of_the_schedule_is_what_counts() -> None:
    daily = Schedule(enabled=True, frequency_hours=24, retry_after_minutes=30)
    backups = (backup(age=hours(13)),)
    assert scheduled_backup_due(daily, backups, NOW) is None
    assert scheduled_backup_due(DEFAULT, backups, NOW) is not None


def test_the_newest_succeeded_backup_decides_not_the_oldest() -> None:
    backups = (backup(age=hours(40)), backup(age=hours(30)), backup(age=hours(1)))
    assert scheduled_backup_due(DEFAULT, backups, NOW) is None


def test_a_failed_last_attempt_is_not_retried_before_retry_after_minutes() -> None:
    backups = (backup(age=hours(20)), backup(BackupStatus.FAILED, age=minutes(29)))
    assert scheduled_backup_due(DEFAULT, backups, NOW) is None


def test_a_failed_last_attempt_is_retried_once_retry_after_minutes_passed() -> None:
    failed = backup(BackupStatus.FAILED, age=minutes(30))
    backups = (backup(age=hours(20)), failed)
    due = scheduled_backup_due(DEFAULT, backups, NOW)
    assert due is not None
    assert due.trigger == "retry"
    assert failed.id in due.reason
    assert "Failed" in due.reason
    assert "30 minutes" in due.reason


def test_a_failed_attempt_does_not_make_a_recent_succeeded_backup_count_less() -> None:
    backups = (backup(age=hours(2)), backup(BackupStatus.FAILED, age=hours(1)))
    assert scheduled_backup_due(DEFAULT, backups, NOW) is None


def test_a_partially_succeeded_backup_does_not_count_as_succeeded() -> None:
    partial = backup(BackupStatus.PARTIALLY_SUCCEEDED, age=hours(1))
    due = scheduled_backup_due(DEFAULT, (backup(age=hours(13)), partial), NOW)
    assert due is not None
    assert "PartiallySucceeded" in due.reason


def test_a_partially_succeeded_last_attempt_waits_for_retry_after_minutes() -> None:
    partial = backup(BackupStatus.PARTIALLY_SUCCEEDED, age=minutes(10))
    assert scheduled_backup_due(DEFAULT, (partial,), NOW) is None
    assert scheduled_backup_due(DEFAULT, (partial,), NOW + minutes(20)) is not None


def test_a_corrupt_backup_does_not_count_as_succeeded() -> None:
    corrupt = backup(BackupStatus.CORRUPT, age=hours(1))
    due = scheduled_backup_due(DEFAULT, (backup(age=hours(13)), corrupt), NOW)
    assert due is not None
    assert due.trigger == "scheduled"


def test_a_backup_still_running_neither_counts_nor_blocks() -> None:
    running = backup(BackupStatus.RUNNING, age=minutes(5))
    due = scheduled_backup_due(DEFAULT, (backup(age=hours(13)), running), NOW)
    assert due is not None
    assert due.trigger == "scheduled"


def test_a_backup_created_after_now_does_not_count_for_a_dry_run_in_the_past() -> None:
    future = backup(age=-hours(1))
    due = scheduled_backup_due(DEFAULT, (backup(age=hours(13)), future), NOW)
    assert due is not None


def test_a_failed_backup_created_after_now_delays_no_backup() -> None:
    # A host whose clock runs ahead failed "in the future": that is no recent
    # attempt by this clock, so neither the scheduled backup nor a retry waits.
    failed_ahead = backup("Failed", age=-minutes(10))
    due = scheduled_backup_due(DEFAULT, (backup(age=hours(13)), failed_ahead), NOW)
    assert due is not None and due.trigger == "scheduled"
    retry = scheduled_backup_due(
        DEFAULT, (backup(age=hours(13)), backup("Failed", age=hours(1)), failed_ahead), NOW
    )
    assert retry is not None and retry.trigger == "retry"


def test_a_succeeded_backup_dated_years_ahead_does_not_silence_the_schedule() -> None:
    years_ahead = backup(age=-hours(24 * 365 * 3))
    due = scheduled_backup_due(DEFAULT, (years_ahead,), NOW)
    assert due is not None and due.reason == "no backup exists yet"


def test_a_disabled_schedule_never_asks_for_a_backup() -> None:
    disabled = Schedule(enabled=False, frequency_hours=12, retry_after_minutes=30)
    assert scheduled_backup_due(disabled, (), NOW) is None
    assert scheduled_backup_due(disabled, (backup(age=hours(500)),), NOW) is None
    assert scheduled_backup_due(disabled, (backup("Failed", age=hours(5)),), NOW) is None


# ------------------------------------------------------------------ the daemon's wake-up


@st.composite
def schedules_and_backups(draw: st.DrawFn) -> tuple[Schedule, tuple[BackupRecord, ...]]:
    """Whole-minute schedules and backups made by now (ties in creation time included)."""
    schedule = Schedule(
        enabled=draw(st.booleans()) or draw(st.booleans()),
        frequency_hours=draw(st.integers(min_value=1, max_value=4)),
        retry_after_minutes=draw(st.integers(min_value=1, max_value=90)),
    )
    statuses = st.sampled_from(list(BackupStatus))
    ages = st.integers(min_value=0, max_value=300).map(minutes)
    records = draw(st.lists(st.tuples(statuses, ages), max_size=6))
    backups = tuple(backup(status, age=age) for status, age in records)
    return schedule, tuple(sorted(backups, key=lambda b: (b.created_at, b.id)))


@settings(max_examples=300, deadline=None)
@given(schedules_and_backups())
def test_the_daemon_wakes_at_the_first_minute_the_planner_finds_a_backup_due(
    case: tuple[Schedule, tuple[BackupRecord, ...]],
) -> None:
    schedule, backups = case
    horizon = schedule.frequency_hours * 60 + schedule.retry_after_minutes + 1
    first_due = next(
        (
            NOW + minutes(m)
            for m in range(1, horizon + 1)
            if scheduled_backup_due(schedule, backups, NOW + minutes(m))
        ),
        None,
    )
    if scheduled_backup_due(schedule, backups, NOW):
        first_due = None  # due already: the next tick runs it, nothing to wake for
    assert next_due_time(schedule, backups, NOW) == first_due


# ------------------------------------------------------------------ trigger


def test_an_empty_trigger_on_a_first_apply_requests_nothing() -> None:
    assert trigger_due("", None) is None


def test_a_non_empty_trigger_on_a_first_apply_requests_a_backup() -> None:
    due = trigger_due("before patch 2411", None)
    assert due is not None
    assert due.trigger == "on-demand"
    assert "'before patch 2411'" in due.reason


def test_an_unchanged_trigger_requests_nothing() -> None:
    assert trigger_due("change CHG0042137", "change CHG0042137") is None
    assert trigger_due("", "") is None


def test_a_changed_trigger_requests_a_backup_quoting_both_values() -> None:
    due = trigger_due("change CHG0042138", "change CHG0042137")
    assert due is not None
    assert due.trigger == "on-demand"
    assert due.reason == "trigger changed from 'change CHG0042137' to 'change CHG0042138'"


def test_clearing_the_trigger_is_a_change_too() -> None:
    due = trigger_due("", "change CHG0042137")
    assert due is not None
    assert due.reason == "trigger changed from 'change CHG0042137' to ''"


def test_a_trigger_works_while_the_schedule_is_disabled() -> None:
    disabled = Schedule(enabled=False, frequency_hours=12, retry_after_minutes=30)
    assert scheduled_backup_due(disabled, (), NOW) is None
    assert trigger_due("restore drill", "") is not None
