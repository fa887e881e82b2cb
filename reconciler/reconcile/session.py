"""One configuration's reconcile: open storage, observe, plan, and apply under the lock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from reconciler.crypto.keys import PrivateKey
from reconciler.errors import IntegrityError
from reconciler.reconcile.actions import PruneBackups, ReclaimChunks, ReclaimEstimate
from reconciler.reconcile.apply import ApplyContext, Outcome, apply_plan, index_keys
from reconciler.reconcile.observe import observe
from reconciler.reconcile.plan import ConfigurationPlan, plan_configuration
from reconciler.reconcile.policy.head import head_suffices
from reconciler.reconcile.prepared import Prepared
from reconciler.reconcile.rewrap_inputs import RewrapInputs, rewrap_inputs
from reconciler.reconcile.state import Desired, MigrationSource, ObservedState
from reconciler.repository.credentials import matches
from reconciler.repository.lock import DEFAULT_TTL, RepositoryLock
from reconciler.repository.store import Repository
from reconciler.spec.secrets import configured_index_key
from reconciler.timeutil import now_utc

if TYPE_CHECKING:
    from reconciler.backup.engine import SourceEvent


def desired_state(prepared: Prepared, rewrap: RewrapInputs | None = None) -> Desired:
    """Return the Desired state: the configuration and what the files it names hold.

    ``rewrap`` carries the loaded previous keys, matched to backups by public key."""
    creds = prepared.credentials
    keys = rewrap.keys if rewrap else ()
    index_key = configured_index_key(prepared.config)
    return Desired(
        prepared.config,
        credentials_principal=creds.principal if creds else "",
        previous_public_keys=frozenset(k.public_key_sha256 for k in keys),
        index_key_check=None if index_key is None else index_key.check(),
    )


def complete_observation(
    prepared: Prepared,
    observed: ObservedState,
    rewrap: RewrapInputs | None = None,
    migration: MigrationSource | None = None,
) -> ObservedState:
    """Return ``observed`` with what else was read for this plan: whether the
    recorded credentials fingerprint still matches the credentials in use, the
    backups' certificates' public keys (``rewrap``) and the previous location
    (``migration``)."""
    recorded = observed.settings.credentials if observed.settings else None
    creds = prepared.credentials
    if recorded is None or creds is None:
        changed = observed.settings is not None and (recorded is None) != (creds is None)
    else:
        changed = not matches(recorded, creds.material)
    return replace(
        observed,
        credentials_changed=changed,
        certificate_public_keys=rewrap.certificate_public_keys if rewrap else {},
        migration=migration,
    )


def make_plan(prepared: Prepared, now: datetime) -> tuple[ConfigurationPlan, ObservedState]:
    """Observe and plan without changing anything.

    Raises StorageError, IntegrityError, ConfigError (a previous key), CryptoError
    (an expired certificate)."""
    plan, observed, _keys = plan_with_keys(prepared, now)
    return plan, observed


def plan_with_keys(
    prepared: Prepared, now: datetime, own_lock: str | None = None
) -> tuple[ConfigurationPlan, ObservedState, tuple[PrivateKey, ...]]:
    """As make_plan, and also return the previous keys loaded for key.rewrap.

    ``own_lock``: the nonce of the repository lock the caller holds, if any."""
    observed = observe(prepared.repository, now_utc(), own_lock, head_only=True)
    if observed.head is not None and not head_suffices(
        observed.head,
        prepared.config,
        observed.settings,
        prepared.previous_location is not None,
        now,
    ):
        observed = observe(prepared.repository, now_utc(), own_lock)
    rewrap = rewrap_inputs(prepared.repository, prepared.config, observed)
    migration = _observe_previous(prepared.previous_location)
    observed = complete_observation(prepared, observed, rewrap, migration)
    # Certificate validity is judged by the real clock, never by --now.
    plan = plan_configuration(desired_state(prepared, rewrap), observed, now, now_utc())
    return with_reclaim_estimate(plan, prepared), observed, rewrap.keys


def with_reclaim_estimate(plan: ConfigurationPlan, prepared: Prepared) -> ConfigurationPlan:
    """``plan`` with how much its chunks.reclaim frees (read from the chunk lists
    of the backups it keeps); unchanged when it plans none."""
    reclaim = plan.action(ReclaimChunks)
    if not isinstance(reclaim, ReclaimChunks):
        return plan
    from reconciler.backup.reclaim import estimate_reclaim

    prune = plan.action(PruneBackups)
    pruned = [p.backup.id for p in prune.backups] if isinstance(prune, PruneBackups) else []
    repository = prepared.repository
    try:
        report = estimate_reclaim(repository, index_keys(repository, prepared.config), pruned)
    except IntegrityError:
        # A damaged chunk list must not stop the plan (its verify marks the
        # backup Corrupt); the reclaim itself then refuses, deleting nothing.
        return plan
    estimate = ReclaimEstimate(report.freed_bytes, report.deleted_packs, report.rewritten_packs)
    actions = tuple(
        replace(a, estimate=estimate) if isinstance(a, ReclaimChunks) else a for a in plan.actions
    )
    return replace(plan, actions=actions)


def reconcile(
    prepared: Prepared,
    now: datetime,
    lock_command: str,
    on_plan: Callable[[ConfigurationPlan], None] | None = None,
    on_outcome: Callable[[Outcome], None] | None = None,
    on_source: Callable[[SourceEvent], None] | None = None,
    lock_ttl: timedelta | None = None,
    check: Callable[[ConfigurationPlan, ObservedState], None] | None = None,
    lock_timeout: float = 0.0,
    heartbeat: Callable[[], None] | None = None,
    on_bytes: Callable[[int], None] | None = None,
) -> tuple[ConfigurationPlan, list[Outcome]]:
    """Take the lock, observe, plan and apply.

    ``check`` may veto the plan (a saved plan that went stale) by raising.
    ``lock_timeout``: seconds to wait while another process holds the lock.
    ``heartbeat`` is called at every write (a sign of progress); ``on_bytes`` is
    told how many bytes a backup stored as it writes them.
    Raises LockedError, StorageError, PlanError."""
    lock = prepared.repository.writer_lock(
        lock_command, ttl=lock_ttl or DEFAULT_TTL, timeout=lock_timeout
    )
    with lock:
        # Every write checks that the lock is still ours: a holder that lost it
        # (taken over after a long stall, broken by `unlock`) stops writing.
        prepared = replace(prepared, repository=prepared.repository.fenced(_guard(lock, heartbeat)))
        plan, observed, previous_keys = plan_with_keys(prepared, now, lock.holder.nonce)
        if check:
            check(plan, observed)
        if on_plan:
            on_plan(plan)
        context = ApplyContext(
            repository=prepared.repository,
            config=prepared.config,
            now=now,
            real_now=now_utc(),
            credentials=prepared.credentials,
            on_source=on_source,
            on_bytes=on_bytes,
            previous_keys=previous_keys,
            previous_location=prepared.previous_location,
        )
        return plan, apply_plan(plan, context, on_outcome)


def _observe_previous(previous: Repository | None) -> MigrationSource | None:
    """What the migration source holds; it is only read, never locked or changed."""
    if previous is None:
        return None
    observed = observe(previous, now_utc())
    return MigrationSource(
        location=previous.storage.description,
        backups=observed.backups,
        last_trigger=observed.settings.last_trigger if observed.settings else None,
    )


def _guard(lock: RepositoryLock, heartbeat: Callable[[], None] | None) -> Callable[[], None]:
    """What runs before every write: raises LockedError once the lock is lost."""

    def guard() -> None:
        lock.ensure_held()
        if heartbeat is not None:
            heartbeat()

    return guard
