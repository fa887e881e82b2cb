"""Plan: a pure function from desired state, observed state and time to actions.

The plan that ``plan`` prints is the object ``apply`` executes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from reconciler.reconcile.actions import (
    Action,
    CleanupStaging,
    InitRepository,
    PruneBackups,
    RepairCatalog,
    RotateCredentials,
    RotateKey,
    RunBackup,
    SettingChange,
    UpdateSettings,
)
from reconciler.reconcile.observe import ObservedState
from reconciler.reconcile.retention import select_prunable
from reconciler.reconcile.schedule import Due, scheduled_backup_due, trigger_due
from reconciler.repository.records import AppliedSettings
from reconciler.spec.model import BackupConfiguration


@dataclass(frozen=True)
class Desired:
    """A configuration plus what was learned about it outside the pure planner."""

    config: BackupConfiguration
    credentials_changed: bool = False
    credentials_principal: str = ""


@dataclass(frozen=True)
class ConfigurationPlan:
    name: str
    location: str
    now: datetime
    actions: tuple[Action, ...]

    def action(self, kind: type[Action]) -> Action | None:
        return next((a for a in self.actions if isinstance(a, kind)), None)


def plan_configuration(
    desired: Desired, observed: ObservedState, now: datetime
) -> ConfigurationPlan:
    """The ordered actions that bring ``observed`` to ``desired`` at ``now``."""
    config = desired.config
    actions: list[Action] = []
    settings = observed.settings
    if not observed.initialized or settings is None:
        actions.append(InitRepository("the repository does not exist yet"))
    else:
        changes = settings_changes(config, settings)
        if changes:
            actions.append(
                UpdateSettings(
                    f"{len(changes)} setting{'s' if len(changes) > 1 else ''} changed", changes
                )
            )
        if desired.credentials_changed:
            who = f" for {desired.credentials_principal}" if desired.credentials_principal else ""
            actions.append(RotateCredentials(f"the storage credentials{who} changed"))
        key = config.encryption.certificate
        if settings.active_key != key.thumbprint:
            on_old = sum(1 for b in observed.backups if b.key_thumbprint != key.thumbprint)
            actions.append(
                RotateKey(
                    f"the certificate changed to {key.subject}; new backups are encrypted to it",
                    settings.active_key,
                    key.thumbprint,
                    on_old,
                )
            )
    if observed.cleanup:
        count = len(observed.cleanup)
        actions.append(
            CleanupStaging(
                f"{count} leftover{'s' if count > 1 else ''} of an interrupted run",
                observed.cleanup,
            )
        )
    if observed.drift:
        count = len(observed.drift)
        actions.append(
            RepairCatalog(
                f"the catalog disagrees with the storage in {count} place{'s' if count > 1 else ''}"
                " (changed outside backupctl)",
                observed.drift,
            )
        )
    due = _backup_due(config, observed, now)
    if due is not None:
        actions.append(RunBackup(due.reason, due.trigger))
    prunable = select_prunable(observed.backups, config.retention, now, due is not None)
    if prunable:
        count = len(prunable)
        actions.append(
            PruneBackups(
                f"{count} backup{'s' if count > 1 else ''} older than {config.retention.days} days",
                prunable,
            )
        )
    return ConfigurationPlan(config.name, observed.location, now, tuple(actions))


def _backup_due(config: BackupConfiguration, observed: ObservedState, now: datetime) -> Due | None:
    last_trigger = observed.settings.last_trigger if observed.settings else None
    scheduled = scheduled_backup_due(config.schedule, observed.backups, now)
    requested = trigger_due(config.trigger, last_trigger)
    if scheduled and requested:
        return Due(f"{scheduled.reason}; {requested.reason}", requested.trigger)
    return scheduled or requested


def settings_changes(
    config: BackupConfiguration, settings: AppliedSettings
) -> tuple[SettingChange, ...]:
    """Each applied setting that differs from the configuration, old -> new."""
    pairs: list[tuple[str, int | bool | None, int | bool | None]] = [
        ("schedule.enabled", settings.schedule_enabled, config.schedule.enabled),
        ("schedule.frequencyHours", settings.frequency_hours, config.schedule.frequency_hours),
        (
            "schedule.retryAfterMinutes",
            settings.retry_after_minutes,
            config.schedule.retry_after_minutes,
        ),
        ("retention.days", settings.retention_days, config.retention.days),
        ("retention.minBackups", settings.min_backups, config.retention.min_backups),
        (
            "verification.frequencyDays",
            settings.verification_days,
            config.verification.frequency_days if config.verification else None,
        ),
    ]
    return tuple(SettingChange(f, old, new) for f, old, new in pairs if old != new)
