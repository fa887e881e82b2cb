"""``backups list|show`` and the selection of one backup by id or ``latest``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from reconciler.errors import BackupctlError, ObjectNotFoundError
from reconciler.repository.layout import parse_backup_id
from reconciler.repository.records import BackupRecord, newest_succeeded
from reconciler.repository.store import Repository
from reconciler.spec.model import BackupConfiguration
from reconciler.usecases.repositories import open_repository

LATEST = "latest"
"""The selector naming the newest Succeeded backup (see records.newest_succeeded)."""


@dataclass(frozen=True)
class BackupList:
    """Every backup of the configurations asked about, each one's oldest first."""

    backups: tuple[BackupRecord, ...]


def list_backups(configs: Sequence[BackupConfiguration]) -> BackupList:
    """Return the backups the configurations' catalogs list.

    Raises BackupctlError when a repository does not exist."""
    records: list[BackupRecord] = []
    for config in configs:
        records.extend(open_repository(config).read_catalog().backups)
    return BackupList(tuple(records))


def show_backup(config: BackupConfiguration, selector: str) -> BackupRecord:
    """Return the manifest of the backup ``selector`` names (an id or ``latest``).

    Raises BackupctlError when the repository or the backup does not exist."""
    return find_backup(open_repository(config), selector)


def find_backup(repository: Repository, selector: str) -> BackupRecord:
    """Return the manifest of the backup ``selector`` names (an id or ``latest``).

    Raises BackupctlError naming the backup when there is none, or when
    ``selector`` is neither: an id is used as a storage key, which must never
    be a path."""
    if selector == LATEST:
        newest = newest_succeeded(repository.read_catalog().backups)
        if newest is None:
            raise BackupctlError(f"{repository.description} holds no Succeeded backup")
        backup_id = newest.id
    elif parse_backup_id(selector) is not None:
        backup_id = selector
    else:
        raise BackupctlError(
            f"{selector!r} is not a backup id (like 20261125T120000Z-1a2b3c) nor 'latest'"
        )
    try:
        return repository.read_manifest(backup_id)
    except ObjectNotFoundError:
        raise BackupctlError(f"{repository.description} has no backup {backup_id}") from None


def holds_backup(repository: Repository, backup_id: str) -> bool:
    """Return whether the catalog lists ``backup_id`` (False for what is no id)."""
    return any(b.id == backup_id for b in repository.read_catalog().backups)
