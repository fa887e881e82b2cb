"""Which applied settings differ from the configuration: a pure function."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reconciler.repository.records import AppliedSettings
from reconciler.spec.model import BackupConfiguration

Scalar = str | int | bool | None


@dataclass(frozen=True)
class SettingChange:
    field: str
    old: Scalar
    new: Scalar


_YAML_FIELDS = {
    "schedule_enabled": "spec.schedule.enabled",
    "frequency_hours": "spec.schedule.frequencyHours",
    "retry_after_minutes": "spec.schedule.retryAfterMinutes",
    "retention_days": "spec.retention.days",
    "min_backups": "spec.retention.minBackups",
    "verification_days": "spec.verification.frequencyDays",
}
"""The applied settings that come straight from the configuration, and where
the YAML says them (as a plan names them)."""


def configured_settings(config: BackupConfiguration) -> dict[str, Any]:
    """The AppliedSettings fields the configuration sets, by field name."""
    return {
        "schedule_enabled": config.schedule.enabled,
        "frequency_hours": config.schedule.frequency_hours,
        "retry_after_minutes": config.schedule.retry_after_minutes,
        "retention_days": config.retention.days,
        "min_backups": config.retention.min_backups,
        "verification_days": config.verification.frequency_days if config.verification else None,
    }


def settings_changes(
    config: BackupConfiguration, settings: AppliedSettings
) -> tuple[SettingChange, ...]:
    """Each applied setting that differs from the configuration, old -> new."""
    wanted = configured_settings(config)
    return tuple(
        SettingChange(path, getattr(settings, name), wanted[name])
        for name, path in _YAML_FIELDS.items()
        if getattr(settings, name) != wanted[name]
    )
