"""The actions a plan is made of: frozen values that say what apply will do and why."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from reconciler.reconcile.retention import Prunable
from reconciler.reconcile.rewrap import RewrapItem, StayingItem
from reconciler.reconcile.verification import Verifiable
from reconciler.repository.records import BackupRecord
from reconciler.repository.survey import CleanupItem, DriftItem
from reconciler.timeutil import format_time

Scalar = str | int | bool | None


@dataclass(frozen=True)
class SettingChange:
    field: str
    old: Scalar
    new: Scalar


@dataclass(frozen=True)
class InitRepository:
    name: ClassVar[str] = "repository.init"
    reason: str
    last_trigger: str = ""
    """The trigger already applied at a previous location being migrated from,
    so that relocating does not request an on-demand backup again."""

    def details(self) -> dict[str, Any]:
        return {}


@dataclass(frozen=True)
class MigrateBackups:
    name: ClassVar[str] = "backups.migrate"
    reason: str
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


@dataclass(frozen=True)
class UpdateSettings:
    name: ClassVar[str] = "settings.update"
    reason: str
    changes: tuple[SettingChange, ...]

    def details(self) -> dict[str, Any]:
        return {"changes": [{"field": c.field, "old": c.old, "new": c.new} for c in self.changes]}


@dataclass(frozen=True)
class RotateCredentials:
    name: ClassVar[str] = "credentials.rotate"
    reason: str

    def details(self) -> dict[str, Any]:
        return {}


@dataclass(frozen=True)
class RotateKey:
    name: ClassVar[str] = "key.rotate"
    reason: str
    from_thumbprint: str
    to_thumbprint: str
    backups_on_old_key: int

    def details(self) -> dict[str, Any]:
        return {
            "fromThumbprint": self.from_thumbprint,
            "toThumbprint": self.to_thumbprint,
            "backupsOnOldKey": self.backups_on_old_key,
        }


@dataclass(frozen=True)
class CleanupStaging:
    name: ClassVar[str] = "staging.cleanup"
    reason: str
    items: tuple[CleanupItem, ...]

    def details(self) -> dict[str, Any]:
        return {"items": [{"path": i.path, "reason": i.reason} for i in self.items]}


@dataclass(frozen=True)
class RepairCatalog:
    name: ClassVar[str] = "catalog.repair"
    reason: str
    items: tuple[DriftItem, ...]

    def details(self) -> dict[str, Any]:
        return {
            "items": [
                {
                    "path": f"backups/{i.backup_id}" if i.backup_id else "catalog.json",
                    "reason": i.reason,
                }
                for i in self.items
            ]
        }


@dataclass(frozen=True)
class RunBackup:
    name: ClassVar[str] = "backup.run"
    reason: str
    trigger: str

    def details(self) -> dict[str, Any]:
        return {"trigger": self.trigger}


@dataclass(frozen=True)
class PruneBackups:
    name: ClassVar[str] = "backup.prune"
    reason: str
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


@dataclass(frozen=True)
class RewrapKeys:
    name: ClassVar[str] = "key.rewrap"
    reason: str
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


@dataclass(frozen=True)
class VerifyBackups:
    name: ClassVar[str] = "backup.verify"
    reason: str
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


Action = (
    InitRepository
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
