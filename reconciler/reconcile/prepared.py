"""A configuration with its storage opened, where every command reading a repository starts.

Apart from session.py so that commands that only read (backups, restore,
unlock) do not import the planner and the apply machinery.
"""

from __future__ import annotations

from dataclasses import dataclass

from reconciler.reconcile.locations import location_credentials, open_storage
from reconciler.repository.store import Repository
from reconciler.spec.model import BackupConfiguration
from reconciler.storage.factory import Credentials


@dataclass(frozen=True)
class Prepared:
    config: BackupConfiguration
    repository: Repository
    credentials: Credentials | None
    previous_location: Repository | None = None
    """spec.migration.from, opened read-only in spirit: nothing writes to it."""


def prepare(config: BackupConfiguration) -> Prepared:
    """Resolve the storage credentials and open the storage (no I/O yet).

    Raises ConfigError (secrets) or StorageError (backend)."""
    credentials = location_credentials(config.storage)
    storage = open_storage(config.storage, config.name)
    previous = None
    if config.migration_from is not None:
        previous = Repository(open_storage(config.migration_from, config.name), config.name)
    return Prepared(config, Repository(storage, config.name), credentials, previous)
