"""``restore``: decrypt a backup with the offline private key and write it back.

Two steps, so that a caller can say which backup it restores before the
(long) restore starts: select_restore, then restore."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.crypto.keyring import KeyRing
from reconciler.repository.records import BackupRecord
from reconciler.repository.store import Repository
from reconciler.spec.model import BackupConfiguration
from reconciler.usecases.queries import find_backup
from reconciler.usecases.repositories import known_thumbprints, open_repository

if TYPE_CHECKING:
    from reconciler.backup.opening import BackupKeys
    from reconciler.backup.restore import RestoredSource


@dataclass(frozen=True)
class RestoreSelection:
    """The backup to restore, with the keys that open it."""

    config: BackupConfiguration
    repository: Repository
    backup: BackupRecord
    keys: BackupKeys = field(repr=False)
    """Secret: never shown."""

    def stored_sizes(self) -> dict[str, int]:
        """Each stored source's size in bytes (what progress counts towards)."""
        return {
            s.name: s.size_bytes if s.chunked else s.object.size_bytes
            for s in self.backup.sources
            if s.object is not None
        }


@dataclass(frozen=True)
class RestoreReport:
    backup: BackupRecord
    restored: tuple[RestoredSource, ...]


def select_restore(config: BackupConfiguration, selector: str, ring: KeyRing) -> RestoreSelection:
    """Return the backup ``selector`` names (an id or ``latest``) and its data key.

    Raises BackupctlError when the repository or the backup does not exist,
    WrongKeyError when no key of ``ring`` opens it."""
    # Here, not at the top: every other command would pay for importing it.
    from reconciler.backup.opening import keys_for

    repository = open_repository(config)
    record = find_backup(repository, selector)
    keys = keys_for(repository, record, ring, known_thumbprints(repository))
    return RestoreSelection(config, repository, record, keys)


def restore(
    selection: RestoreSelection,
    to: Path | None,
    sources: tuple[str, ...],
    force: bool,
    on_source: Callable[[str], None] | None = None,
    on_bytes: Callable[[int], None] | None = None,
) -> RestoreReport:
    """Restore ``sources`` (every one when empty) of the selected backup under
    ``to``/<source>/, or in place when ``to`` is None; return where each went.

    ``force`` replaces non-empty targets. ``on_source`` hears when each source
    starts, ``on_bytes`` how many stored bytes were read. Raises RestoreError,
    IntegrityError or StorageError (see backup.restore.restore_backup)."""
    from reconciler.backup.restore import RestoreRequest, restore_backup

    request = RestoreRequest(to=to.resolve() if to else None, sources=sources, force=force)
    restored = restore_backup(
        selection.repository,
        selection.config,
        selection.backup,
        selection.keys,
        request,
        on_source=on_source,
        on_bytes=on_bytes,
    )
    return RestoreReport(selection.backup, tuple(restored))
