"""Planting repository state that only a crash or a hand edit makes.

Tests that need a Running catalog entry, a manifest without catalog entry or
a hand-written catalog write it here, below the Repository's rules."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from reconciler.repository.catalog import write_catalog
from reconciler.repository.layout import FORMAT_KEY, manifest_key
from reconciler.repository.records import (
    FORMAT_NAME,
    BackupRecord,
    dumps,
    record_to_json,
)
from reconciler.repository.store import Repository
from reconciler.timeutil import format_time


def plant_catalog(
    repository: Repository, backups: Iterable[BackupRecord], pending_deletes: Iterable[str] = ()
) -> None:
    write_catalog(repository.storage, tuple(backups), tuple(sorted(pending_deletes)))


def plant_manifest(repository: Repository, record: BackupRecord) -> None:
    repository.storage.write_atomic(manifest_key(record.id), dumps(record_to_json(record)))


def plant_format(repository: Repository, created_at: datetime) -> None:
    """The format marker alone: a repository with no settings (as no init leaves it)."""
    marker = {
        "format": FORMAT_NAME,
        "version": 1,  # planted backups are whole objects (format 1)
        "name": repository.name,
        "createdAt": format_time(created_at),
    }
    repository.storage.write_atomic(FORMAT_KEY, dumps(marker))
