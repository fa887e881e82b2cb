"""The two states a plan is made from, as plain values.

Desired is what the configuration (the YAML) asks for; observed is what the
storage holds. Each fact has one home: anything learnt by reading a
repository, the key history or the previous location is observed, never
desired. Both are built outside the planner (session.py, observe.py), which
itself does no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from reconciler.repository.catalog_head import CatalogHead
from reconciler.repository.lock import LockHolder
from reconciler.repository.records import AppliedSettings, BackupRecord
from reconciler.repository.survey import CleanupItem, DriftItem
from reconciler.spec.model import BackupConfiguration


@dataclass(frozen=True)
class Desired:
    """A configuration, with what the files it names resolve to."""

    config: BackupConfiguration
    credentials_principal: str = ""
    """Who the configured storage credentials belong to (never the secret)."""
    previous_public_keys: frozenset[str] = frozenset()
    """Public-key SHA-256 of each spec.encryption.previousKeys entry, loaded for key.rewrap."""
    index_key_check: str | None = None
    """The public check value of spec.encryption.indexKey, None when it is not configured."""


@dataclass(frozen=True)
class MigrationSource:
    """What was observed at ``spec.migration.from`` (read only, never modified)."""

    location: str
    backups: tuple[BackupRecord, ...]
    last_trigger: str | None


@dataclass(frozen=True)
class ObservedState:
    location: str
    initialized: bool
    settings: AppliedSettings | None
    backups: tuple[BackupRecord, ...]
    """Committed backups (and ones a live process is writing), oldest first."""
    cleanup: tuple[CleanupItem, ...]
    drift: tuple[DriftItem, ...]
    lock: LockHolder | None
    head: CatalogHead | None = None
    """Set when only the catalog's head was read: then ``backups`` holds just
    the newest backups, and the head tells about the others (a plan may be
    made from that alone only where reconcile.policy.head.head_suffices says so)."""
    credentials_changed: bool = False
    """The storage credentials in use are not those whose fingerprint the
    repository recorded (judged by session.py, which holds the secret)."""
    certificate_public_keys: Mapping[str, str] = field(default_factory=dict)
    """Certificate thumbprint -> public-key SHA-256 for the backups' certificates,
    from the key history and manifests; read only when key.rewrap may be planned."""
    migration: MigrationSource | None = None
    """What the previous location (spec.migration.from) holds."""
    format_version: int = 0
    """1 (a whole object per source), 2 (deduplicating), 0 when not initialized."""
    index_key_check: str | None = None
    """Format 2: the public check value of the repository's index key."""
    index_key_stored: bool = False
    """Format 2: the repository keeps its (generated) index key itself."""
    reclaim_due: bool = False
    """Format 2: a prune or reclaim was interrupted before its reclaim finished."""

    @classmethod
    def empty(cls, location: str) -> ObservedState:
        return cls(location, False, None, (), (), (), None)
