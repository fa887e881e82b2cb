"""Plan: a pure function from desired state, observed state and time to actions.

The plan that ``plan`` prints is the object ``apply`` executes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from reconciler.crypto.certificates import Certificate
from reconciler.errors import ConfigError
from reconciler.reconcile.actions import (
    Action,
    CleanupStaging,
    InitRepository,
    MigrateBackups,
    PruneBackups,
    ReclaimChunks,
    RepairCatalog,
    RewrapKeys,
    RotateCredentials,
    RotateKey,
    RunBackup,
    UpdateSettings,
    UpgradeRepository,
    VerifyBackups,
)
from reconciler.reconcile.policy.certificate_health import certificate_warnings
from reconciler.reconcile.policy.migration import select_migration
from reconciler.reconcile.policy.retention import select_prunable
from reconciler.reconcile.policy.rewrap import select_rewrap, staying_warning
from reconciler.reconcile.policy.schedule import backup_due
from reconciler.reconcile.policy.settings import settings_changes
from reconciler.reconcile.policy.verification import select_verifiable
from reconciler.reconcile.state import Desired, ObservedState
from reconciler.repository.records import BackupRecord


@dataclass(frozen=True)
class ConfigurationPlan:
    name: str
    location: str
    now: datetime
    actions: tuple[Action, ...]
    warnings: tuple[str, ...] = ()
    """What the operator should know that is not an action (an expiring certificate)."""
    certificate: Certificate | None = None
    """The certificate new backups are encrypted to, for its expiry date."""

    def action(self, kind: type[Action]) -> Action | None:
        return next((a for a in self.actions if isinstance(a, kind)), None)


def plan_configuration(
    desired: Desired,
    observed: ObservedState,
    now: datetime,
    real_now: datetime | None = None,
) -> ConfigurationPlan:
    """The ordered actions that bring ``observed`` to ``desired`` at ``now``.

    ``real_now`` is the real clock, for certificate validity (never --now);
    None skips that check. Raises CryptoError when the certificate is expired
    or not yet valid at ``real_now``."""
    config = desired.config
    actions: list[Action] = []
    warnings: list[str] = []
    if real_now is not None:
        warnings.extend(certificate_warnings(config.encryption.certificate, real_now))
    settings = observed.settings
    if not observed.initialized or settings is None:
        reason = (
            "the repository's settings.json is missing; it is written again from the configuration"
            if observed.initialized
            else "the repository does not exist yet"
        )
        previous_trigger = observed.migration.last_trigger if observed.migration else None
        actions.append(InitRepository(reason, previous_trigger or ""))
    else:
        changes = settings_changes(config, settings)
        if changes:
            actions.append(
                UpdateSettings(
                    f"{len(changes)} setting{'s' if len(changes) > 1 else ''} changed", changes
                )
            )
        if observed.credentials_changed:
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
        rewrap, staying = _plan_rewrap(desired, observed)
        if rewrap is not None:
            actions.append(rewrap)
        elif staying is not None:
            warnings.append(staying)
        if observed.format_version == 1:
            actions.append(
                UpgradeRepository(
                    "the repository stores every backup whole (format 1); format 2 stores each"
                    " piece of data once",
                    desired.index_key_check is not None,
                    len(observed.backups),
                )
            )
        else:
            check_index_key(desired, observed)
    migrated: tuple[BackupRecord, ...] = ()
    if observed.migration is not None:
        choice = select_migration(observed.migration, observed.backups, config.retention, now)
        migrated = choice.copy
        if choice.copy:
            count = len(choice.copy)
            actions.append(
                MigrateBackups(
                    f"copy {count} backup{'s' if count > 1 else ''} from the previous location"
                    f" {observed.migration.location}",
                    observed.migration.location,
                    choice.copy,
                    choice.skipped,
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
    # Backups about to be migrated count for the schedule, as a planned run
    # counts for retention: a recent one at the old location is recent enough.
    migrated_trigger = observed.migration.last_trigger if observed.migration else None
    last_trigger = settings.last_trigger if settings else migrated_trigger
    due = backup_due(
        config.schedule, config.trigger, (*observed.backups, *migrated), last_trigger, now
    )
    if due is not None:
        actions.append(RunBackup(due.reason, due.trigger))
    prunable = select_prunable(observed.backups, config.retention, now, due is not None)
    # Verification comes before the prune: a backup it finds Corrupt no longer
    # counts among the kept Succeeded ones when apply re-evaluates the prune,
    # so an older intact backup is not deleted in its place.
    pruned = frozenset(p.backup.id for p in prunable)
    verifiable = select_verifiable(observed.backups, config.verification, now, pruned)
    if verifiable and config.verification is not None:
        count = len(verifiable)
        actions.append(
            VerifyBackups(
                f"{count} backup{'s' if count > 1 else ''} not verified in the last"
                f" {config.verification.frequency_days} days",
                verifiable,
            )
        )
    if prunable:
        count = len(prunable)
        actions.append(
            PruneBackups(
                f"{count} backup{'s' if count > 1 else ''} older than {config.retention.days} days",
                prunable,
            )
        )
    interrupted = any(i.backup_id is not None and i.committed is None for i in observed.cleanup)
    if observed.format_version >= 2 and (prunable or interrupted or observed.reclaim_due):
        actions.append(
            ReclaimChunks(
                "backups are deleted: their chunks that no kept backup references are deleted too"
                if prunable
                else "an interrupted backup left chunks that no backup references"
                if interrupted
                else "an interrupted prune or chunks.reclaim left chunks that no backup references"
            )
        )
    return ConfigurationPlan(
        config.name,
        observed.location,
        now,
        tuple(actions),
        tuple(warnings),
        config.encryption.certificate,
    )


def check_index_key(desired: Desired, observed: ObservedState) -> None:
    """Refuse, before anything is written, an index key that is not the repository's.

    Raises ConfigError."""
    where = f"the repository in {observed.location}"
    if desired.index_key_check is not None:
        if (
            observed.index_key_check is not None
            and desired.index_key_check != observed.index_key_check
        ):
            raise ConfigError(
                f"spec.encryption.indexKey of {desired.config.name} is not the index key of"
                f" {where}: configure the key the repository was created with"
            )
    elif observed.index_key_check is not None and not observed.index_key_stored:
        raise ConfigError(
            f"{where} keeps no index key of its own: configure spec.encryption.indexKey of"
            f" {desired.config.name} with the key the repository was created with"
        )


def _plan_rewrap(desired: Desired, observed: ObservedState) -> tuple[RewrapKeys | None, str | None]:
    """Return the key.rewrap action, or else a warning about backups no key can move."""
    encryption = desired.config.encryption
    if not encryption.rewrap_existing:
        return None, None
    # Backups being re-entered or removed by cleanup or repair in this apply
    # are re-wrapped by the next one, so the two never write the same entry.
    repaired = frozenset(
        backup_id
        for backup_id in (
            *(i.backup_id for i in observed.cleanup),
            *(i.backup_id for i in observed.drift),
        )
        if backup_id is not None
    )
    rewrap, staying = select_rewrap(
        observed.backups,
        encryption.certificate,
        desired.previous_public_keys,
        observed.certificate_public_keys,
        repaired,
    )
    if not rewrap:
        return None, staying_warning(staying) if staying else None
    count = len(rewrap)
    reason = (
        f"{count} backup{'s are' if count > 1 else ' is'} wrapped to an earlier certificate;"
        f" re-wrap {'their data keys' if count > 1 else 'its data key'} to"
        f" {encryption.certificate.subject}"
    )
    return RewrapKeys(reason, encryption.certificate.thumbprint, rewrap, staying), None
