"""Which backups retention deletes (reconciler.reconcile.retention): pure functions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.reconcile.retention import Prunable, select_prunable
from reconciler.repository.records import BackupRecord, BackupStatus
from reconciler.spec.model import Retention

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
THUMBPRINT = "3945B02E1AAD377F4DB189914E1BAB1BC267C0DA"
WEEK = Retention(days=7, min_backups=2)

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


def days(n: float) -> timedelta:
    return timedelta(days=n)


def ids(prunable: tuple[Prunable, ...]) -> list[str]:
    return [p.backup.id for p in prunable]


def kept(
    backups: tuple[BackupRecord, ...], retention: Retention, planned: bool = False
) -> list[BackupRecord]:
    gone = set(ids(select_prunable(backups, retention, NOW, planned)))
    return [b for b in backups if b.id not in gone]


def test_nothing_is_pruned_from_an_empty_repository() -> None:
    assert select_prunable((), WEEK, NOW) == ()


def test_a_backup_exactly_days_old_is_kept_and_one_a_second_older_is_pruned() -> None:
    older = backup(age=days(7) + timedelta(seconds=1))
    exactly = backup(age=days(7))
    newer = (backup(age=days(1)), backup(age=days(2)))
    prunable = select_prunable((older, exactly, *newer), WEEK, NOW)
    assert ids(prunable) == [older.id]


def test_the_prune_reason_names_status_age_and_the_limit() -> None:
    old = backup(age=days(10))
    [entry] = select_prunable((old, backup(age=days(1)), backup(age=days(2))), WEEK, NOW)
    assert entry.age_hours == pytest.approx(240.0)
    assert entry.reason == "Succeeded backup 10d old, older than 7 days"


def test_the_newest_succeeded_backup_is_never_pruned_even_when_all_are_old() -> None:
    oldest, middle, newest = backup(age=days(30)), backup(age=days(20)), backup(age=days(10))
    one = Retention(days=7, min_backups=1)
    assert ids(select_prunable((oldest, middle, newest), one, NOW)) == [oldest.id, middle.id]


def test_the_newest_min_backups_succeeded_backups_are_kept_however_old() -> None:
    backups = tuple(backup(age=days(d)) for d in (40, 30, 20, 10))
    keep_three = Retention(days=7, min_backups=3)
    assert ids(select_prunable(backups, keep_three, NOW)) == [backups[0].id]


@pytest.mark.parametrize(
    "status",
    [BackupStatus.FAILED, BackupStatus.PARTIALLY_SUCCEEDED, BackupStatus.CORRUPT],
)
def test_old_unsuccessful_backups_are_pruned_and_do_not_count_as_kept(
    status: BackupStatus,
) -> None:
    bad_old = backup(status, age=days(9))
    bad_new = backup(status, age=days(8))
    good = (backup(age=days(20)), backup(age=days(15)))
    prunable = select_prunable((*good, bad_old, bad_new), WEEK, NOW)
    # The two Succeeded ones are the newest two Succeeded: kept although the
    # unsuccessful ones are newer.
    assert ids(prunable) == [bad_old.id, bad_new.id]
    assert str(status) in prunable[0].reason


def test_unsuccessful_backups_younger_than_days_are_kept() -> None:
    failed = backup(BackupStatus.FAILED, age=days(3))
    assert select_prunable((failed,), WEEK, NOW) == ()


def test_a_running_backup_is_never_pruned() -> None:
    running = backup(BackupStatus.RUNNING, age=days(100))
    assert select_prunable((running, backup(age=days(1)), backup(age=days(2))), WEEK, NOW) == ()


def test_a_planned_success_lets_one_more_old_succeeded_backup_go() -> None:
    backups = tuple(backup(age=days(d)) for d in (30, 20, 10))
    assert ids(select_prunable(backups, WEEK, NOW)) == [backups[0].id]
    assert ids(select_prunable(backups, WEEK, NOW, planned_success=True)) == [
        backups[0].id,
        backups[1].id,
    ]


def test_a_planned_success_with_min_backups_one_lets_every_old_backup_go() -> None:
    backups = tuple(backup(age=days(d)) for d in (30, 20))
    one = Retention(days=7, min_backups=1)
    assert ids(select_prunable(backups, one, NOW)) == [backups[0].id]
    assert ids(select_prunable(backups, one, NOW, planned_success=True)) == [b.id for b in backups]


def test_the_result_is_ordered_oldest_first_whatever_the_input_order() -> None:
    a, b, c = (backup("Failed", age=days(d)) for d in (30, 20, 10))
    shuffled = (c, a, b)
    assert ids(select_prunable(shuffled, WEEK, NOW)) == [a.id, b.id, c.id]


def test_backups_created_after_now_are_never_pruned() -> None:
    future = backup(age=-days(1))
    assert select_prunable((future,), Retention(days=1, min_backups=1), NOW) == ()


def test_a_backup_created_after_now_is_never_pruned_however_far_ahead() -> None:
    # Made by hosts whose clocks run weeks ahead: younger than any limit.
    far, farther = backup(age=-days(20)), backup(age=-days(30))
    failed = backup(BackupStatus.FAILED, age=-days(40))
    old = backup(age=days(10))
    one = Retention(days=7, min_backups=1)
    assert ids(select_prunable((old, far, farther, failed), one, NOW)) == [old.id]


def test_a_backup_created_after_now_counts_towards_min_backups() -> None:
    # The clock of the host that made `ahead` runs an hour fast: it still is one
    # of the two newest Succeeded backups, so the 30-day-old one may go.
    oldest, older = backup(age=days(30)), backup(age=days(20))
    ahead = backup(age=-timedelta(hours=1))
    assert kept((oldest, older, ahead), WEEK) == [older, ahead]


def test_a_backup_created_after_now_is_the_newest_succeeded_one() -> None:
    old = backup(age=days(20))
    ahead = backup(age=-timedelta(minutes=5))
    one = Retention(days=7, min_backups=1)
    assert kept((old, ahead), one) == [ahead]
    # A failed one ahead of now protects nothing.
    failed_ahead = backup(BackupStatus.FAILED, age=-timedelta(minutes=5))
    assert kept((old, failed_ahead), one) == [old, failed_ahead]


# ------------------------------------------------------------------ property


statuses = st.sampled_from(list(BackupStatus))
ages_in_minutes = st.integers(min_value=-60 * 24, max_value=60 * 24 * 60)
backup_sets = st.lists(st.tuples(statuses, ages_in_minutes), max_size=25)
policies = st.builds(
    Retention,
    days=st.integers(min_value=1, max_value=30),
    min_backups=st.integers(min_value=1, max_value=10),
)


@settings(max_examples=300, deadline=None)
@given(backup_sets, policies, st.booleans())
def test_retention_never_drops_the_newest_succeeded_nor_goes_below_min_backups(
    specs: list[tuple[BackupStatus, int]], retention: Retention, planned: bool
) -> None:
    backups = tuple(backup(status, age=timedelta(minutes=age)) for status, age in specs)
    prunable = select_prunable(backups, retention, NOW, planned_success=planned)
    gone = set(ids(prunable))
    assert len(gone) == len(prunable)
    assert all(b.id in {x.id for x in backups} for b in (p.backup for p in prunable))
    succeeded = [b for b in backups if b.status is BackupStatus.SUCCEEDED]
    remaining = [b for b in succeeded if b.id not in gone]
    # A planned backup.run counts as one Succeeded backup made at NOW.
    planned_extra = 1 if planned else 0
    assert len(remaining) + planned_extra >= min(retention.min_backups, len(succeeded))
    if succeeded and not planned:
        newest = max(succeeded, key=lambda b: (b.created_at, b.id))
        assert newest.id not in gone
    assert not any(p.backup.status is BackupStatus.RUNNING for p in prunable)
    assert all(p.backup.created_at < NOW - timedelta(days=retention.days) for p in prunable)
    # Nothing old is kept that the rule does not protect: the protected ones are the
    # newest Succeeded by creation time, those created after NOW included.
    newest_first = sorted(succeeded, key=lambda b: (b.created_at, b.id), reverse=True)
    protected = {b.id for b in newest_first[: max(retention.min_backups, 1) - planned_extra]}
    limit = NOW - timedelta(days=retention.days)
    for b in backups:
        if b.id not in gone and b.status is not BackupStatus.RUNNING and b.created_at < limit:
            assert b.id in protected, f"{b.status} backup {b.id} kept although old"
    created = [p.backup.created_at for p in prunable]
    assert created == sorted(created)
