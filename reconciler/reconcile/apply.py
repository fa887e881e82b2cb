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
from typing import TYPE_CHECKING, assert_never

from reconciler.crypto.keyring import KeyRing
from reconciler.crypto.keys import PrivateKey
from reconciler.dedup.keys import DerivedKeys, IndexKey
from reconciler.errors import BackupctlError, IntegrityError
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
from reconciler.reconcile.plan import ConfigurationPlan
from reconciler.reconcile.policy.retention import select_prunable
from reconciler.reconcile.policy.settings import configured_settings
from reconciler.repository.credentials import fingerprint
from reconciler.repository.keyfiles import (
    IndexKeyRecord,
    backup_index_key,
    index_key_record,
    new_index_key_record,
)
from reconciler.repository.records import (
    AppliedSettings,
    BackupRecord,
    BackupStatus,
    CredentialFingerprint,
    KeyHistoryEntry,
)
from reconciler.repository.store import Repository
from reconciler.spec.model import BackupConfiguration
from reconciler.spec.secrets import configured_index_key
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
    error: BackupctlError | None = None
    """What made the action fail, when an error did (the status page tells a
    full disk from an unreachable server by it)."""


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


def apply_plan(
    plan: ConfigurationPlan,
    context: ApplyContext,
    on_outcome: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """Execute every action of ``plan``; return one outcome per action."""
    outcomes: list[Outcome] = []
    failed: set[str] = set()
    for action in plan.actions:
        blockers = [a for a in failed if a == "repository.init" or a in action.depends_on]
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
    try:
        return _dispatch(action, context)
    except BackupctlError as exc:
        return Outcome(action, OutcomeStatus.FAILED, str(exc), error=exc)


def _dispatch(action: Action, context: ApplyContext) -> Outcome:
    """Run ``action``'s executor. mypy checks that every kind of action has one."""
    match action:
        case InitRepository():
            return _init(action, context)
        case UpdateSettings():
            return _update_settings(action, context)
        case RotateCredentials():
            return _rotate_credentials(action, context)
        case RotateKey():
            return _rotate_key(action, context)
        case RewrapKeys():
            return _rewrap(action, context)
        case MigrateBackups():
            return _migrate(action, context)
        case CleanupStaging():
            return _cleanup(action, context)
        case RepairCatalog():
            return _repair(action, context)
        case RunBackup():
            return _run(action, context)
        case VerifyBackups():
            return _verify(action, context)
        case PruneBackups():
            return _prune(action, context)
        case UpgradeRepository():
            return _upgrade(action, context)
        case ReclaimChunks():
            return _reclaim(action, context)
        case _:
            assert_never(action)


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


def _init(action: InitRepository, context: ApplyContext) -> Outcome:
    config = context.config
    repository = context.repository
    settings = AppliedSettings(
        **configured_settings(config),
        active_key=config.encryption.certificate.thumbprint,
        key_history=(_key_entry(context),),
        credentials=_credential_fingerprint(context),
        last_trigger=action.last_trigger,
    )
    repository.initialize(settings, context.now, _initial_index_key(context))
    return Outcome(action, OutcomeStatus.DONE, f"initialized {repository.description}")


def _initial_index_key(context: ApplyContext) -> IndexKeyRecord:
    """A new (or upgraded) repository's index key: the configured one, else the previous
    location's (so that its format 2 backups move without being re-chunked),
    else a new one."""
    encryption = context.config.encryption
    previous = context.previous_location
    configured = configured_index_key(context.config)
    if configured is None and previous is not None and previous.exists():
        record = previous.read_index_key()
        if record is not None and record.stored is not None:
            kept = IndexKey.from_base64(record.stored, where=previous.description)
            return index_key_record(kept, encryption.certificate, stored=True)
    return new_index_key_record(configured, encryption.certificate)[1]


def _upgrade(action: UpgradeRepository, context: ApplyContext) -> Outcome:
    # As for a new repository: the previous location's key when migrating, so
    # that its format 2 backups can be copied in without being re-chunked.
    context.repository.upgrade(_initial_index_key(context), context.now)
    return Outcome(
        action,
        OutcomeStatus.DONE,
        f"{context.repository.description} now stores each piece of data once (format 2)",
    )


def _reclaim(action: ReclaimChunks, context: ApplyContext) -> Outcome:
    from reconciler.backup.reclaim import reclaim_unreferenced

    repository = context.repository
    report = reclaim_unreferenced(repository, index_keys(repository, context.config))
    return Outcome(
        action,
        OutcomeStatus.DONE,
        f"freed {report.freed_bytes} bytes: deleted {report.deleted_packs} packs, rewrote"
        f" {report.rewritten_packs}, dropped {report.dropped_chunks} chunks from the index",
    )


def index_keys(repository: Repository, config: BackupConfiguration) -> DerivedKeys:
    """The keys a backup host derives from the repository's index key.

    Raises ConfigError (the configured key is not the repository's, or none is
    configured and the repository keeps none), IntegrityError."""
    record = repository.read_index_key()
    if record is None:
        raise IntegrityError(f"{repository.description} is format 2 but has no index key record")
    return backup_index_key(record, configured_index_key(config), repository.description).derive()


def _update_settings(action: UpdateSettings, context: ApplyContext) -> Outcome:
    config = context.config
    settings = replace(_settings(context), **configured_settings(config))
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
    shared = _shared_index_keys(source, target, context.config)
    copied_bytes = 0
    for planned in action.backups:
        # The full manifest (with its wrapped key), not the catalog summary.
        record = source.read_manifest(planned.id)
        if target.has_manifest(record.id):
            continue  # copied by an earlier, interrupted apply
        copied_bytes += copy_backup(source, target, record, shared)
    count = len(action.backups)
    return Outcome(
        action,
        OutcomeStatus.DONE,
        f"copied {count} backup{'s' if count != 1 else ''} ({copied_bytes} bytes) from"
        f" {action.source}; every object verified against its SHA-256",
    )


def _shared_index_keys(
    source: Repository, target: Repository, config: BackupConfiguration
) -> DerivedKeys | None:
    """The index keys both repositories share (format 2 chunks move between them
    unchanged), None when they share none."""
    if source.format_version < 2 or target.format_version < 2:
        return None
    source_key, target_key = source.read_index_key(), target.read_index_key()
    if source_key is None or target_key is None or source_key.check != target_key.check:
        return None
    return index_keys(target, config)


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
                results.append(
                    verify_backup(
                        repository,
                        item.backup.id,
                        None,
                        {},
                        Path(work),
                        configured_index_key(context.config),
                    )
                )
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
