"""Which backups a migration copies from the previous location: a pure function."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from reconciler.reconcile.policy.retention import select_prunable
from reconciler.reconcile.state import MigrationSource
from reconciler.repository.records import BackupRecord, BackupStatus
from reconciler.spec.model import Retention


@dataclass(frozen=True)
class MigrationChoice:
    copy: tuple[BackupRecord, ...]
    skipped: tuple[tuple[BackupRecord, str], ...]


def select_migration(
    source: MigrationSource,
    present: tuple[BackupRecord, ...],
    retention: Retention,
    now: datetime,
) -> MigrationChoice:
    """The backups to copy (oldest first) and the ones left behind, with why.

    Already-copied backups (same id) are neither; backups retention would
    prune at ``now`` are not copied; Running and Corrupt ones are left behind."""
    have = {b.id for b in present}
    candidates = [b for b in source.backups if b.id not in have]
    prunable = {p.backup.id for p in select_prunable((*present, *candidates), retention, now)}
    copy: list[BackupRecord] = []
    skipped: list[tuple[BackupRecord, str]] = []
    for backup in sorted(candidates, key=lambda b: (b.created_at, b.id)):
        if backup.status is BackupStatus.RUNNING:
            skipped.append((backup, "it is still being written at the previous location"))
        elif backup.status is BackupStatus.CORRUPT:
            skipped.append((backup, "a verification found it damaged"))
        elif backup.id in prunable:
            skipped.append((backup, f"retention ({retention.days} days) would prune it"))
        else:
            copy.append(backup)
    return MigrationChoice(tuple(copy), tuple(skipped))
