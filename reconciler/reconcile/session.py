"""One configuration's reconcile: open storage, observe, plan, and apply under the lock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from reconciler.backup.engine import SourceEvent
from reconciler.reconcile.apply import ApplyContext, Outcome, apply_plan
from reconciler.reconcile.observe import ObservedState, observe
from reconciler.reconcile.plan import ConfigurationPlan, Desired, plan_configuration
from reconciler.repository.credentials import matches
from reconciler.repository.lock import RepositoryLock
from reconciler.repository.store import Repository
from reconciler.spec.model import BackupConfiguration
from reconciler.storage.factory import Credentials, location_credentials, open_storage
from reconciler.timeutil import now_utc


@dataclass(frozen=True)
class Prepared:
    config: BackupConfiguration
    repository: Repository
    credentials: Credentials | None


def prepare(config: BackupConfiguration) -> Prepared:
    """Resolve the storage credentials and open the storage (no I/O yet).

    Raises ConfigError (secrets) or StorageError (backend)."""
    credentials = location_credentials(config.storage)
    storage = open_storage(config.storage, config.name)
    return Prepared(config, Repository(storage, config.name), credentials)


def desired_state(prepared: Prepared, observed: ObservedState) -> Desired:
    recorded = observed.settings.credentials if observed.settings else None
    creds = prepared.credentials
    if recorded is None or creds is None:
        changed = observed.settings is not None and (recorded is None) != (creds is None)
    else:
        changed = not matches(recorded, creds.material)
    principal = creds.principal if creds else ""
    return Desired(prepared.config, credentials_changed=changed, credentials_principal=principal)


def make_plan(prepared: Prepared, now: datetime) -> tuple[ConfigurationPlan, ObservedState]:
    """Observe and plan without changing anything. Raises StorageError, IntegrityError."""
    observed = observe(prepared.repository, now_utc())
    return plan_configuration(desired_state(prepared, observed), observed, now), observed


def reconcile(
    prepared: Prepared,
    now: datetime,
    lock_command: str,
    on_plan: Callable[[ConfigurationPlan], None] | None = None,
    on_outcome: Callable[[Outcome], None] | None = None,
    on_source: Callable[[SourceEvent], None] | None = None,
    lock_ttl: timedelta | None = None,
    check: Callable[[ConfigurationPlan, ObservedState], None] | None = None,
) -> tuple[ConfigurationPlan, list[Outcome]]:
    """Take the lock, observe, plan and apply.

    ``check`` may veto the plan (a saved plan that went stale) by raising.
    Raises LockedError, StorageError, PlanError."""
    storage = prepared.repository.storage
    storage.ensure_root()
    lock = RepositoryLock(storage, prepared.config.name, lock_command)
    if lock_ttl is not None:
        lock = RepositoryLock(storage, prepared.config.name, lock_command, ttl=lock_ttl)
    with lock:
        plan, observed = make_plan(prepared, now)
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
        )
        return plan, apply_plan(plan, context, on_outcome)
