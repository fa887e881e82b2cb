"""Which backups a migration copies: a pure function of both locations and now."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from reconciler.reconcile.policy.migration import MigrationSource, select_migration
from reconciler.repository.records import BackupRecord, BackupStatus
from reconciler.spec.model import Retention

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def backup(n: int, age: timedelta, status: BackupStatus = BackupStatus.SUCCEEDED) -> BackupRecord:
    created = NOW - age
    return BackupRecord(
        id=f"{created:%Y%m%dT%H%M%SZ}-{n:06x}",
        configuration="region",
        status=status,
        created_at=created,
        started_at=created,
        completed_at=created,
        trigger="scheduled",
        key_thumbprint="AB" * 20,
        sources=(),
    )


def source(*backups: BackupRecord) -> MigrationSource:
    return MigrationSource("local folder /old/region", backups, last_trigger="")


def test_everything_retention_keeps_is_copied_oldest_first() -> None:
    old, new = backup(1, timedelta(days=3)), backup(2, timedelta(hours=2))
    choice = select_migration(source(new, old), (), Retention(days=7, min_backups=2), NOW)
    assert choice.copy == (old, new)
    assert choice.skipped == ()


def test_backups_already_copied_are_neither_copied_nor_reported() -> None:
    done, todo = backup(1, timedelta(days=2)), backup(2, timedelta(days=1))
    choice = select_migration(source(done, todo), (done,), Retention(), NOW)
    assert choice.copy == (todo,)
    assert choice.skipped == ()


def test_expired_running_and_corrupt_backups_are_left_behind_with_a_reason() -> None:
    expired = backup(1, timedelta(days=30))
    running = backup(2, timedelta(minutes=5), BackupStatus.RUNNING)
    corrupt = backup(3, timedelta(days=1), BackupStatus.CORRUPT)
    kept = backup(4, timedelta(days=2))
    newest = backup(5, timedelta(hours=1))
    choice = select_migration(
        source(expired, running, corrupt, kept, newest), (), Retention(days=7, min_backups=1), NOW
    )
    assert choice.copy == (kept, newest)
    assert dict((b.id, why) for b, why in choice.skipped) == {
        expired.id: "retention (7 days) would prune it",
        corrupt.id: "a verification found it damaged",
        running.id: "it is still being written at the previous location",
    }


def test_the_newest_succeeded_backup_is_copied_even_when_old() -> None:
    only = backup(1, timedelta(days=90))
    choice = select_migration(source(only), (), Retention(days=7, min_backups=1), NOW)
    assert choice.copy == (only,)
