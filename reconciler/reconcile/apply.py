"""Apply: execute a plan's actions in order, one outcome each.

An action never raises out of ``apply_plan``: a failure becomes an outcome
(kopf-style), later actions that depend on it are skipped rather than guessed,
and the caller decides the exit code from the outcomes."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler.crypto.keyring import KeyRing
from reconciler.crypto.keys import PrivateKey
from reconciler.errors import BackupctlError
from reconciler.reconcile.actions import (
    Action,
    CleanupStaging,
    InitRepository,
    MigrateBackups,
    PruneBackups,
    RepairCatalog,
    RewrapKeys,
    RotateCredentials,
    RotateKey,
    RunBackup,
    UpdateSettings,
    VerifyBackups,
)
from reconciler.reconcile.plan import ConfigurationPlan
from reconciler.reconcile.retention import select_prunable
from reconciler.repository.credentials import fingerprint
from reconciler.repository.records import (
    AppliedSettings,
    BackupRecord,
    BackupStatus,
    CredentialFingerprint,
    KeyHistoryEntry,
)
from reconciler.repository.store import Repository
from reconciler.spec.model import BackupConfiguration
from reconciler.storage.factory import Credentials

if TYPE_CHECKING:
    from reconciler.backup.engine import SourceEvent


class OutcomeStatus(StrEnum):
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Outcome:
    action: Action
    status: OutcomeStatus
    message: str
    backup: BackupRecord | None = None


@dataclass(frozen=True)
class ApplyContext:
    repository: Repository
    config: BackupConfiguration
    now: datetime
    """The plan's time: schedule, retention and new backups' creation time."""
    real_now: datetime
    credentials: Credentials | None
    on_source: Callable[[SourceEvent], None] | None = None
    on_bytes: Callable[[int], None] | None = None
    """Told how many bytes a backup stored as it writes them (progress)."""
    previous_keys: tuple[PrivateKey, ...] = ()
    """spec.encryption.previousKeys, loaded when key.rewrap is planned."""
    previous_location: Repository | None = None
    """The repository at spec.migration.from: only ever read."""


# Which earlier actions an action cannot do without.
_DEPENDS_ON: dict[str, tuple[str, ...]] = {
    "backup.run": ("repository.init", "key.rotate", "staging.cleanup"),
    "backup.prune": ("repository.init", "staging.cleanup", "catalog.repair"),
    "key.rewrap": ("repository.init", "key.rotate"),
    "backups.migrate": ("repository.init",),
    "backup.verify": ("repository.init", "staging.cleanup", "catalog.repair"),
}


def apply_plan(
    plan: ConfigurationPlan,
    context: ApplyContext,
    on_outcome: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """Execute every action of ``plan``; return one outcome per action."""
    outcomes: list[Outcome] = []
    failed: set[str] = set()
    for action in plan.actions:
        blockers = [
            a for a in failed if a == "repository.init" or a in _DEPENDS_ON.get(action.name, ())
        ]
        if blockers:
            outcome = Outcome(
                action, OutcomeStatus.SKIPPED, f"skipped because {blockers[0]} failed"
            )
        else:
            outcome = _execute(action, context)
        if outcome.status is not OutcomeStatus.DONE:
            failed.add(action.name)
        outcomes.append(outcome)
        if on_outcome:
            on_outcome(outcome)
    return outcomes


def _execute(action: Action, context: ApplyContext) -> Outcome:
    executor: Callable[[Any, ApplyContext], Outcome] = _EXECUTORS[action.name]
    try:
        return executor(action, context)
    except BackupctlError as exc:
        return Outcome(action, OutcomeStatus.FAILED, str(exc))


def _settings(context: ApplyContext) -> AppliedSettings:
    settings = context.repository.read_settings()
    if settings is None:
        raise BackupctlError(f"{context.repository.description} has no settings.json")
    return settings


def _credential_fingerprint(context: ApplyContext) -> CredentialFingerprint | None:
    creds = context.credentials
    return None if creds is None else fingerprint(creds.material, creds.principal)


def _key_entry(context: ApplyContext) -> KeyHistoryEntry:
    cert = context.config.encryption.certificate
    return KeyHistoryEntry(
        thumbprint=cert.thumbprint,
        public_key_sha256=cert.public_key_sha256,
        subject=cert.subject,
        not_after=cert.not_after,
        activated_at=context.now,
        retired_at=None,
    )


def _configured_settings(config: BackupConfiguration) -> dict[str, Any]:
    """The AppliedSettings fields that come straight from the configuration."""
    return {
        "schedule_enabled": config.schedule.enabled,
        "frequency_hours": config.schedule.frequency_hours,
        "retry_after_minutes": config.schedule.retry_after_minutes,
        "retention_days": config.retention.days,
        "min_backups": config.retention.min_backups,
        "verification_days": config.verification.frequency_days if config.verification else None,
    }


def _init(action: InitRepository, context: ApplyContext) -> Outcome:
    config = context.config
    repository = context.repository
    settings = AppliedSettings(
        **_configured_settings(config),
        active_key=config.encryption.certificate.thumbprint,
        key_history=(_key_entry(context),),
        credentials=_credential_fingerprint(context),
        last_trigger=action.last_trigger,
    )
    repository.initialize(settings, context.now)
    return Outcome(action, OutcomeStatus.DONE, f"initialized {repository.description}")


def _update_settings(action: UpdateSettings, context: ApplyContext) -> Outcome:
    config = context.config
    settings = replace(_settings(context), **_configured_settings(config))
    context.repository.write_settings(settings)
    changed = ", ".join(f"{c.field} {c.old} -> {c.new}" for c in action.changes)
    return Outcome(action, OutcomeStatus.DONE, changed)


def _rotate_credentials(action: RotateCredentials, context: ApplyContext) -> Outcome:
    # Only credentials that can write, read back and delete are recorded.
    context.repository.probe_write_access()
    settings = replace(_settings(context), credentials=_credential_fingerprint(context))
    context.repository.write_settings(settings)
    return Outcome(
        action,
        OutcomeStatus.DONE,
        "validated the new credentials (write, read back, delete) and recorded their fingerprint",
    )


def _rotate_key(action: RotateKey, context: ApplyContext) -> Outcome:
    settings = _settings(context)
    history = tuple(
        replace(k, retired_at=context.now) if k.retired_at is None else k
        for k in settings.key_history
        if k.thumbprint != action.to_thumbprint
    )
    settings = replace(
        settings,
        active_key=action.to_thumbprint,
        key_history=(*history, _key_entry(context)),
    )
    context.repository.write_settings(settings)
    return Outcome(
        action,
        OutcomeStatus.DONE,
        f"new backups are encrypted to {action.to_thumbprint}; {action.backups_on_old_key}"
        " backups stay on their keys",
    )


def _cleanup(action: CleanupStaging, context: ApplyContext) -> Outcome:
    context.repository.clean_up(action.items)
    return Outcome(action, OutcomeStatus.DONE, f"cleaned up {len(action.items)} leftovers")


def _migrate(action: MigrateBackups, context: ApplyContext) -> Outcome:
    from reconciler.backup.migrate import copy_backup  # here: plan needs none of backup.*

    source = context.previous_location
    if source is None:
        raise BackupctlError("spec.migration.from is not configured, so nothing can be copied")
    target = context.repository
    copied_bytes = 0
    for planned in action.backups:
        # The full manifest (with its wrapped key), not the catalog summary.
        record = source.read_manifest(planned.id)
        if target.has_manifest(record.id):
            continue  # copied by an earlier, interrupted apply
        copied_bytes += copy_backup(source, target, record)
    count = len(action.backups)
    return Outcome(
        action,
        OutcomeStatus.DONE,
        f"copied {count} backup{'s' if count != 1 else ''} ({copied_bytes} bytes) from"
        f" {action.source}; every object verified against its SHA-256",
    )


def _repair(action: RepairCatalog, context: ApplyContext) -> Outcome:
    context.repository.repair_catalog(action.items)
    return Outcome(action, OutcomeStatus.DONE, f"corrected {len(action.items)} catalog entries")


def _run(action: RunBackup, context: ApplyContext) -> Outcome:
    from reconciler.backup.engine import run_backup  # here: plan needs none of backup.*

    record = run_backup(
        context.repository,
        context.config,
        context.now,
        action.trigger,
        context.on_source,
        context.on_bytes,
    )
    settings = _settings(context)
    if settings.last_trigger != context.config.trigger:
        context.repository.write_settings(replace(settings, last_trigger=context.config.trigger))
    size = sum(s.size_bytes for s in record.sources)
    summary = f"backup {record.id} {record.status} ({len(record.sources)} sources, {size} bytes)"
    if record.status is BackupStatus.SUCCEEDED:
        return Outcome(action, OutcomeStatus.DONE, summary, record)
    failures = "; ".join(f"{s.name}: {s.error}" for s in record.sources if s.error)
    return Outcome(action, OutcomeStatus.FAILED, f"{summary}: {failures}", record)


def _prune(action: PruneBackups, context: ApplyContext) -> Outcome:
    repository = context.repository
    catalog = repository.read_catalog()
    # Re-evaluate against what is there now (the planned backup may have
    # failed), and never delete more than the plan listed.
    allowed = {
        p.backup.id for p in select_prunable(catalog.backups, context.config.retention, context.now)
    }
    doomed = [p.backup.id for p in action.backups if p.backup.id in allowed]
    kept_back = len(action.backups) - len(doomed)
    if not doomed:
        return Outcome(action, OutcomeStatus.DONE, _kept_message(kept_back))
    repository.prune(doomed)
    message = f"deleted {len(doomed)} backup{'s' if len(doomed) != 1 else ''}: {', '.join(doomed)}"
    if kept_back:
        message += "; " + _kept_message(kept_back)
    return Outcome(action, OutcomeStatus.DONE, message)


def _kept_message(count: int) -> str:
    return f"kept {count} planned for deletion, since retention no longer allows deleting them"


def _rewrap(action: RewrapKeys, context: ApplyContext) -> Outcome:
    """Re-wrap the listed backups' data keys; data objects are not touched."""
    from reconciler.backup.rewrap import rewrap_backups

    report = rewrap_backups(
        context.repository,
        [item.backup.id for item in action.backups],
        KeyRing(context.previous_keys),
        context.config.encryption.certificate,
    )
    done = len(report.rewrapped) + len(report.already)
    message = (
        f"re-wrapped {done} backup{'s' if done != 1 else ''} to {action.to_thumbprint}"
        f" without rewriting data; {len(action.staying)} stay on their keys"
    )
    if report.gone:
        message += f"; {len(report.gone)} no longer exist"
    if report.failures:
        return Outcome(action, OutcomeStatus.FAILED, f"{message}; {'; '.join(report.failures)}")
    return Outcome(action, OutcomeStatus.DONE, message)


def _verify(action: VerifyBackups, context: ApplyContext) -> Outcome:
    """Check the listed backups without a key and record each verdict.

    A damaged backup becomes Corrupt and fails the action."""
    from reconciler.backup.verify import verdicts_of, verify_backup

    results = []
    repository = context.repository
    with tempfile.TemporaryDirectory(prefix="backupctl-verify-") as work:
        try:
            for item in action.backups:
                results.append(verify_backup(repository, item.backup.id, None, {}, Path(work)))
        finally:
            # Verdicts reached before a storage failure are kept.
            repository.record_verdicts(verdicts_of(results), context.now)
    errors = [r.error for r in results if r.error is not None]
    count = len(results)
    summary = f"verified {count} backup{'s' if count != 1 else ''}"
    if errors:
        damaged = sum(1 for r in results if r.damaged)
        return Outcome(
            action,
            OutcomeStatus.FAILED,
            f"{summary}, {damaged} marked Corrupt: {'; '.join(errors)}",
        )
    return Outcome(
        action, OutcomeStatus.DONE, f"{summary}: every object has its recorded size and SHA-256"
    )


_EXECUTORS: dict[str, Callable[[Any, ApplyContext], Outcome]] = {
    InitRepository.name: _init,
    UpdateSettings.name: _update_settings,
    RotateCredentials.name: _rotate_credentials,
    RotateKey.name: _rotate_key,
    RewrapKeys.name: _rewrap,
    MigrateBackups.name: _migrate,
    CleanupStaging.name: _cleanup,
    RepairCatalog.name: _repair,
    RunBackup.name: _run,
    VerifyBackups.name: _verify,
    PruneBackups.name: _prune,
}
