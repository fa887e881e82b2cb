"""The actions a plan is made of: frozen values that say what apply will do and why."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from reconciler.reconcile.observe import CleanupItem, DriftItem
from reconciler.reconcile.retention import Prunable
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

    def details(self) -> dict[str, Any]:
        return {}


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
                {"path": i.backup_id or "catalog.json", "reason": i.reason} for i in self.items
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


Action = (
    InitRepository
    | UpdateSettings
    | RotateCredentials
    | RotateKey
    | CleanupStaging
    | RepairCatalog
    | RunBackup
    | PruneBackups
)
