"""The actions a plan is made of: frozen values that say what apply will do and why.

Each action declares everything about its kind in one place: its name, its
mark in the text plan, the earlier actions it depends on, its JSON fields and
the lines printed under it. Adding an action is adding a class here (and its
executor in apply.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, TypeAlias

from reconciler.reconcile.policy.retention import Prunable
from reconciler.reconcile.policy.rewrap import RewrapItem, StayingItem
from reconciler.reconcile.policy.settings import Scalar, SettingChange
from reconciler.reconcile.policy.verification import Verifiable
from reconciler.repository.records import BackupRecord
from reconciler.repository.survey import CleanupItem, DriftItem
from reconciler.timeutil import format_time


@dataclass(frozen=True)
class PlanAction:
    """What every action declares, so that rendering and apply need no table of kinds."""

    name: ClassVar[str]
    symbol: ClassVar[str]
    """Its mark in the text plan: + creates, - deletes, ~ changes, ? checks."""
    depends_on: ClassVar[tuple[str, ...]] = ()
    """Earlier actions it cannot do without: when one of them failed, apply skips
    it (a failed repository.init skips every later action regardless)."""
    reason: str

    def details(self) -> dict[str, Any]:
        """Its fields in the JSON plan (schemas/plan.schema.json) beside action and reason."""
        return {}

    def detail_lines(self) -> tuple[str, ...]:
        """The lines the text and Markdown plans print under it."""
        return ()


@dataclass(frozen=True)
class InitRepository(PlanAction):
    name: ClassVar[str] = "repository.init"
    symbol: ClassVar[str] = "+"
    last_trigger: str = ""
    """The trigger already applied at a previous location being migrated from,
    so that relocating does not request an on-demand backup again."""


@dataclass(frozen=True)
class UpgradeRepository(PlanAction):
    """Switch a format 1 repository to format 2 (deduplicating)."""

    name: ClassVar[str] = "repository.upgrade"
    symbol: ClassVar[str] = "~"
    index_key_configured: bool
    whole_backups: int
    """Format 1 backups, which stay as they are until retention removes them."""

    def details(self) -> dict[str, Any]:
        return {
            "indexKeyConfigured": self.index_key_configured,
            "formatOneBackups": self.whole_backups,
        }

    def detail_lines(self) -> tuple[str, ...]:
        lines = [
            "new backups store each piece of data once (repository format 2);"
            f" the {self.whole_backups} existing backups stay as they are until retention"
            " removes them"
        ]
        if not self.index_key_configured:
            lines.append(INDEX_KEY_KEPT_NOTE)
        return tuple(lines)


INDEX_KEY_KEPT_NOTE = (
    "no spec.encryption.indexKey: a generated index key is kept in the storage, so whoever"
    " can read the storage can test whether a file they already have is in a backup"
    " (they still cannot read anything)"
)


@dataclass(frozen=True)
class ReclaimChunks(PlanAction):
    """Delete the chunks no kept backup references (format 2), after a prune or
    an interrupted run."""

    name: ClassVar[str] = "chunks.reclaim"
    symbol: ClassVar[str] = "-"
    estimate: ReclaimEstimate | None = None
    """Filled in by the session (it reads chunk lists); None when it could not be."""

    def details(self) -> dict[str, Any]:
        if self.estimate is None:
            return {}
        return {
            "freesBytes": self.estimate.freed_bytes,
            "packsDeleted": self.estimate.deleted_packs,
            "packsRewritten": self.estimate.rewritten_packs,
        }

    def detail_lines(self) -> tuple[str, ...]:
        if self.estimate is None:
            return ("frees what only the deleted backups referenced",)
        e = self.estimate
        return (
            f"frees {e.freed_bytes} bytes: deletes {e.deleted_packs} packs and rewrites"
            f" {e.rewritten_packs} mostly unused ones",
        )


@dataclass(frozen=True)
class ReclaimEstimate:
    freed_bytes: int
    deleted_packs: int
    rewritten_packs: int


@dataclass(frozen=True)
class MigrateBackups(PlanAction):
    name: ClassVar[str] = "backups.migrate"
    symbol: ClassVar[str] = "+"
    depends_on: ClassVar[tuple[str, ...]] = ("repository.init",)
    source: str
    """The previous location (a description, never a secret)."""
    backups: tuple[BackupRecord, ...]
    skipped: tuple[tuple[BackupRecord, str], ...]

    def details(self) -> dict[str, Any]:
        return {
            "from": self.source,
            "backups": [
                {"id": b.id, "createdAt": format_time(b.created_at), "status": str(b.status)}
                for b in self.backups
            ],
            "skipped": [{"id": b.id, "reason": why} for b, why in self.skipped],
        }

    def detail_lines(self) -> tuple[str, ...]:
        return (
            *(
                f"{b.id}  {b.status}, created {format_time(b.created_at)}: copy"
                for b in self.backups
            ),
            *(f"{b.id}: not copied, {why}" for b, why in self.skipped),
        )


@dataclass(frozen=True)
class UpdateSettings(PlanAction):
    name: ClassVar[str] = "settings.update"
    symbol: ClassVar[str] = "~"
    changes: tuple[SettingChange, ...]

    def details(self) -> dict[str, Any]:
        return {"changes": [{"field": c.field, "old": c.old, "new": c.new} for c in self.changes]}

    def detail_lines(self) -> tuple[str, ...]:
        return tuple(f"{c.field}: {_show(c.old)} -> {_show(c.new)}" for c in self.changes)


@dataclass(frozen=True)
class RotateCredentials(PlanAction):
    name: ClassVar[str] = "credentials.rotate"
    symbol: ClassVar[str] = "~"


@dataclass(frozen=True)
class RotateKey(PlanAction):
    name: ClassVar[str] = "key.rotate"
    symbol: ClassVar[str] = "~"
    from_thumbprint: str
    to_thumbprint: str
    backups_on_old_key: int

    def details(self) -> dict[str, Any]:
        return {
            "fromThumbprint": self.from_thumbprint,
            "toThumbprint": self.to_thumbprint,
            "backupsOnOldKey": self.backups_on_old_key,
        }

    def detail_lines(self) -> tuple[str, ...]:
        return (
            f"key: {self.from_thumbprint} -> {self.to_thumbprint}",
            f"{self.backups_on_old_key} existing backups stay on their keys",
        )


@dataclass(frozen=True)
class CleanupStaging(PlanAction):
    name: ClassVar[str] = "staging.cleanup"
    symbol: ClassVar[str] = "-"
    items: tuple[CleanupItem, ...]

    def details(self) -> dict[str, Any]:
        return {"items": [{"path": i.path, "reason": i.reason} for i in self.items]}

    def detail_lines(self) -> tuple[str, ...]:
        return tuple(f"{i.path}: {i.reason}" for i in self.items)


@dataclass(frozen=True)
class RepairCatalog(PlanAction):
    name: ClassVar[str] = "catalog.repair"
    symbol: ClassVar[str] = "~"
    items: tuple[DriftItem, ...]

    def details(self) -> dict[str, Any]:
        return {
            "items": [
                {
                    "path": i.path,
                    "reason": i.reason,
                }
                for i in self.items
            ]
        }

    def detail_lines(self) -> tuple[str, ...]:
        return tuple(i.reason for i in self.items)


@dataclass(frozen=True)
class RunBackup(PlanAction):
    name: ClassVar[str] = "backup.run"
    symbol: ClassVar[str] = "+"
    depends_on: ClassVar[tuple[str, ...]] = ("repository.init", "key.rotate", "staging.cleanup")
    trigger: str

    def details(self) -> dict[str, Any]:
        return {"trigger": self.trigger}


@dataclass(frozen=True)
class PruneBackups(PlanAction):
    name: ClassVar[str] = "backup.prune"
    symbol: ClassVar[str] = "-"
    depends_on: ClassVar[tuple[str, ...]] = (
        "repository.init",
        "staging.cleanup",
        "catalog.repair",
    )
    backups: tuple[Prunable, ...]

    def details(self) -> dict[str, Any]:
        return {
            "backups": [
                {
                    "id": p.backup.id,
                    "createdAt": format_time(p.backup.created_at),
                    "status": str(p.backup.status),
                    "ageHours": round(p.age_hours, 1),
                    "reason": p.reason,
                }
                for p in self.backups
            ]
        }

    def detail_lines(self) -> tuple[str, ...]:
        return tuple(
            f"{p.backup.id}  created {format_time(p.backup.created_at)}: {p.reason}"
            for p in self.backups
        )


@dataclass(frozen=True)
class RewrapKeys(PlanAction):
    name: ClassVar[str] = "key.rewrap"
    symbol: ClassVar[str] = "~"
    depends_on: ClassVar[tuple[str, ...]] = ("repository.init", "key.rotate")
    to_thumbprint: str
    backups: tuple[RewrapItem, ...]
    staying: tuple[StayingItem, ...] = ()
    """Backups on earlier certificates that no previous key can move."""

    def details(self) -> dict[str, Any]:
        return {
            "toThumbprint": self.to_thumbprint,
            "backups": [
                {
                    "id": r.backup.id,
                    "createdAt": format_time(r.backup.created_at),
                    "fromThumbprint": r.from_thumbprint,
                    "reason": f"wrapped to previous certificate {r.from_thumbprint}",
                }
                for r in self.backups
            ],
            "staying": [
                {
                    "id": s.backup.id,
                    "createdAt": format_time(s.backup.created_at),
                    "thumbprint": s.backup.key_thumbprint,
                    "reason": s.reason,
                }
                for s in self.staying
            ],
        }

    def detail_lines(self) -> tuple[str, ...]:
        return (
            *(f"{r.backup.id}: {r.from_thumbprint} -> {self.to_thumbprint}" for r in self.backups),
            *(
                f"{s.backup.id}: stays on {s.backup.key_thumbprint}: {s.reason}"
                for s in self.staying
            ),
        )


@dataclass(frozen=True)
class VerifyBackups(PlanAction):
    name: ClassVar[str] = "backup.verify"
    symbol: ClassVar[str] = "?"
    depends_on: ClassVar[tuple[str, ...]] = (
        "repository.init",
        "staging.cleanup",
        "catalog.repair",
    )
    backups: tuple[Verifiable, ...]

    def details(self) -> dict[str, Any]:
        return {
            "backups": [
                {
                    "id": v.backup.id,
                    "createdAt": format_time(v.backup.created_at),
                    "status": str(v.backup.status),
                    "lastVerifiedAt": None
                    if v.backup.verified_at is None
                    else format_time(v.backup.verified_at),
                    "reason": v.reason,
                }
                for v in self.backups
            ]
        }

    def detail_lines(self) -> tuple[str, ...]:
        return tuple(f"{v.backup.id}  {v.backup.status}: {v.reason}" for v in self.backups)


Action: TypeAlias = (
    InitRepository
    | UpgradeRepository
    | ReclaimChunks
    | UpdateSettings
    | RotateCredentials
    | RotateKey
    | MigrateBackups
    | CleanupStaging
    | RepairCatalog
    | RunBackup
    | PruneBackups
    | RewrapKeys
    | VerifyBackups
)
"""Every kind of action, closed: a ``match`` over it can end in ``assert_never``."""


def _show(value: Scalar) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
