"""Which applied settings differ from the configuration: a pure function."""

from __future__ import annotations

from dataclasses import dataclass

from reconciler.repository.records import AppliedSettings
from reconciler.spec.model import BackupConfiguration

Scalar = str | int | bool | None


@dataclass(frozen=True)
class SettingChange:
    field: str
    old: Scalar
    new: Scalar


def settings_changes(
    config: BackupConfiguration, settings: AppliedSettings
) -> tuple[SettingChange, ...]:
    """Each applied setting that differs from the configuration, old -> new."""
    pairs: list[tuple[str, int | bool | None, int | bool | None]] = [
        ("spec.schedule.enabled", settings.schedule_enabled, config.schedule.enabled),
        ("spec.schedule.frequencyHours", settings.frequency_hours, config.schedule.frequency_hours),
        (
            "spec.schedule.retryAfterMinutes",
            settings.retry_after_minutes,
            config.schedule.retry_after_minutes,
        ),
        ("spec.retention.days", settings.retention_days, config.retention.days),
        ("spec.retention.minBackups", settings.min_backups, config.retention.min_backups),
        (
            "spec.verification.frequencyDays",
            settings.verification_days,
            config.verification.frequency_days if config.verification else None,
        ),
    ]
    return tuple(SettingChange(f, old, new) for f, old, new in pairs if old != new)
