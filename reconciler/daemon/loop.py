"""The daemon loop: reload, reconcile every configuration, sleep, repeat.

Each tick reads the configuration files again (a GitOps sync may have changed
them; an invalid version is reported once and the last valid one keeps
running), then plans and applies each configuration on its own: a failure, a
locked repository or even a bug in one configuration is logged and counted,
and the others still run. The loop then sleeps until the next interval or the
next scheduled due time, whichever is first, plus a little jitter so that two
replicas drift apart instead of contending for the lock in step.

Stopping: ``stop()`` sets the stop event, which ends a sleep at once. A stop
signal that arrives during a tick also raises ``DaemonStopping`` in the loop's
thread (``interrupt``), which unwinds the running reconcile as Ctrl-C does: the
backup in progress is not committed and what it wrote is removed, and the
repository lock is released.
"""

from __future__ import annotations

import random
import threading
from datetime import datetime, timedelta
from pathlib import Path

from reconciler.backup.engine import SourceEvent
from reconciler.daemon.clock import Clock
from reconciler.daemon.health import Health
from reconciler.daemon.logs import EventLog
from reconciler.daemon.metrics import DaemonMetrics, ReconcileResult
from reconciler.daemon.state import DaemonState
from reconciler.errors import BackupctlError, ConfigError, LockedError, StorageError
from reconciler.reconcile.apply import Outcome, OutcomeStatus
from reconciler.reconcile.plan import ConfigurationPlan
from reconciler.reconcile.policy.schedule import next_due_time
from reconciler.reconcile.prepared import Prepared, prepare
from reconciler.reconcile.session import reconcile
from reconciler.repository.records import BackupRecord
from reconciler.spec import load_configurations
from reconciler.spec.model import BackupConfiguration
from reconciler.spec.secrets import resolve_secret, secret_refs
from reconciler.timeutil import format_time

LOCK_COMMAND = "backupctl daemon"
MAX_JITTER_SECONDS = 30.0


class DaemonStopping(BaseException):
    """A stop signal arrived while the loop was reconciling.

    A BaseException, like KeyboardInterrupt, so that no ``except Exception``
    on the way swallows it and every ``finally`` (lock release, discarding the
    uncommitted backup) runs."""


class Daemon:
    def __init__(
        self,
        config_path: Path,
        interval: float,
        clock: Clock,
        log: EventLog,
        metrics: DaemonMetrics,
        health: Health | None = None,
        jitter: float | None = None,
        rng: random.Random | None = None,
        state: DaemonState | None = None,
    ) -> None:
        self._path = config_path
        self._interval = timedelta(seconds=interval)
        self._clock = clock
        self._log = log
        self._metrics = metrics
        self._health = health
        self._jitter = min(interval / 10, MAX_JITTER_SECONDS) if jitter is None else jitter
        self._rng = rng or random.Random()
        self._configs: list[BackupConfiguration] = []
        self._reported_problem: str | None = None
        self._busy = False
        self.stop_event = threading.Event()
        self.state = state or DaemonState()
        """What the loop is doing and last did, for the status page."""

    # ------------------------------------------------------------- control

    def load(self) -> list[BackupConfiguration]:
        """Read the configurations before the first tick and return them.

        Raises ConfigError: a daemon does not start on a configuration that was
        never valid (later invalid versions only keep the last valid one)."""
        self._adopt(load_configurations(self._path))
        return self._configs

    def stop(self) -> None:
        """Ask the loop to end; a sleep ends at once, a running tick finishes."""
        self.stop_event.set()

    def interrupt(self, why: str) -> None:
        """Stop now; called from a signal handler in the loop's thread.

        Raises DaemonStopping when a tick is running (the first time only), so
        the backup in progress is abandoned uncommitted instead of awaited."""
        first = not self.stop_event.is_set()
        self.stop_event.set()
        if first and self._busy:
            raise DaemonStopping(why)

    def run(self) -> None:
        """Tick and sleep until stopped. Returns when stopped between ticks.

        Raises DaemonStopping when ``interrupt`` cut a tick short."""
        if self._health:
            self._health.started()
        try:
            while not self.stop_event.is_set():
                self._busy = True
                try:
                    due = self.tick()
                finally:
                    self._busy = False
                if self._health:
                    self._health.tick_finished()
                wake = self._wake_time(due)
                self._log.info("daemon.sleep", f"next reconcile at {format_time(wake)}")
                if self._clock.sleep_until(self.stop_event, wake):
                    break
        finally:
            if self._health:
                self._health.stopped()

    # ------------------------------------------------------------- one tick

    def tick(self) -> datetime | None:
        """Reload the configuration and reconcile each one; return the earliest
        time a schedule asks for a backup next (None: no earlier than the interval)."""
        try:
            self._reload()
        except Exception as exc:  # an unreadable folder must not end the daemon
            self._log.error("config.invalid", f"cannot read {self._path}: {exc}")
        dues = []
        for config in self._configs:
            if self.stop_event.is_set():
                break
            try:
                due = self._reconcile(config)
            except Exception as exc:  # a bug in one configuration must not stop the others
                message = f"unexpected internal error: {type(exc).__name__}: {exc}"
                self._log.error("reconcile.failed", message, config.name)
                self._metrics.reconciled(config.name, ReconcileResult.FAILED, None, True)
                self.state.reconciled(config.name, self._clock.now(), "failed", message, exc)
                continue
            if due is not None:
                dues.append(due)
        return min(dues, default=None)

    def _wake_time(self, due: datetime | None) -> datetime:
        now = self._clock.now()
        wake = now + self._interval
        if due is not None and now < due < wake:
            wake = due
        return wake + timedelta(seconds=self._rng.uniform(0, self._jitter))

    def _reload(self) -> None:
        try:
            configs = load_configurations(self._path)
        except ConfigError as exc:
            problem = "; ".join(str(exc).splitlines())
            if problem != self._reported_problem:
                self._reported_problem = problem
                names = ", ".join(c.name for c in self._configs)
                self._log.error(
                    "config.invalid",
                    f"{problem}; still running the last valid configuration ({names})",
                )
            return
        self._reported_problem = None
        if [c.digest for c in configs] != [c.digest for c in self._configs]:
            self._adopt(configs)

    def _adopt(self, configs: list[BackupConfiguration]) -> None:
        for gone in {c.name for c in self._configs} - {c.name for c in configs}:
            self._metrics.forget(gone)
        for config in configs:
            self._metrics.certificate_seen(config.name, config.encryption.certificate.not_after)
        self._configs = configs
        self.state.adopted(configs)
        self._log.mask(_secret_values(configs))
        names = ", ".join(c.name for c in configs)
        plural = "s" if len(configs) != 1 else ""
        self._log.info(
            "config.loaded", f"{len(configs)} configuration{plural} from {self._path}: {names}"
        )

    def _reconcile(self, config: BackupConfiguration) -> datetime | None:
        """Reconcile one configuration; return when its schedule next asks for a
        backup. Our own errors are logged and counted here; raises only for bugs
        (and DaemonStopping)."""
        name = config.name
        started = self._clock.now()
        try:
            prepared = prepare(config)
        except BackupctlError as exc:  # a secret that does not resolve, say
            self._log.error("reconcile.failed", str(exc), name)
            self._metrics.reconciled(name, ReconcileResult.FAILED, None, storage_ok=False)
            self.state.reconciled(name, started, ReconcileResult.FAILED, str(exc), exc)
            return None
        try:
            plan, outcomes = reconcile(
                prepared,
                started,
                lock_command=LOCK_COMMAND,
                on_plan=self._log_plan,
                on_outcome=lambda outcome: self._log_outcome(name, outcome),
                on_source=lambda event: self._log_source(config, event),
                heartbeat=self._beat,
                on_bytes=lambda count: self.state.bytes_stored(name, count),
            )
        except LockedError as exc:
            self._log.warning("reconcile.locked", str(exc), name)
            self._metrics.reconciled(name, ReconcileResult.LOCKED, None, storage_ok=True)
            self.state.reconciled(name, started, ReconcileResult.LOCKED, str(exc))
            # The gauges still follow the repository (another replica is writing it).
            return self._observe_after(prepared)
        except BackupctlError as exc:
            self._log.error("reconcile.failed", str(exc), name)
            storage_ok = not isinstance(exc, StorageError)
            self._metrics.reconciled(name, ReconcileResult.FAILED, None, storage_ok)
            self.state.reconciled(name, started, ReconcileResult.FAILED, str(exc), exc)
            return None
        self._record(name, started, plan, outcomes)
        return self._observe_after(prepared)

    def _record(
        self, name: str, started: datetime, plan: ConfigurationPlan, outcomes: list[Outcome]
    ) -> None:
        not_done = [o for o in outcomes if o.status is not OutcomeStatus.DONE]
        for outcome in outcomes:
            if outcome.backup is not None:
                self._metrics.backup_made(name, outcome.backup)
        result = ReconcileResult.FAILED if not_done else ReconcileResult.SUCCESS
        self._metrics.reconciled(name, result, len(not_done), storage_ok=True)
        first = not_done[0] if not_done else None
        message = None if first is None else f"{first.action.name}: {first.message}"
        self.state.reconciled(name, started, result, message)
        if plan.actions:
            summary = f"{len(outcomes) - len(not_done)} of {len(outcomes)} actions done"
            if not_done:
                self._log.error("reconcile.done", summary, name)
            else:
                self._log.info("reconcile.done", summary, name)

    def _observe_after(self, prepared: Prepared) -> datetime | None:
        """Read the catalog (no lock needed) for the gauges and the next due time."""
        config = prepared.config
        try:
            backups: tuple[BackupRecord, ...] = prepared.repository.read_catalog().backups
        except BackupctlError as exc:
            self._log.warning("repository.unreadable", str(exc), config.name)
            return None
        self._metrics.repository_seen(config.name, backups)
        return next_due_time(config.schedule, backups, self._clock.now())

    # ------------------------------------------------------------- callbacks

    def _beat(self) -> None:
        if self._health:
            self._health.beat()

    def _log_plan(self, plan: ConfigurationPlan) -> None:
        if plan.actions:
            actions = "; ".join(f"{a.name}: {a.reason}" for a in plan.actions)
            self._log.info("reconcile.plan", actions, plan.name)

    def _log_outcome(self, name: str, outcome: Outcome) -> None:
        self._beat()
        self.state.outcome(name, outcome)
        message = f"{outcome.action.name}: {outcome.message}"
        event = f"action.{outcome.status}"
        if outcome.status is OutcomeStatus.DONE:
            self._log.info(event, message, name)
        elif outcome.status is OutcomeStatus.SKIPPED:
            self._log.warning(event, message, name)
        else:
            self._log.error(event, message, name)

    def _log_source(self, config: BackupConfiguration, event: SourceEvent) -> None:
        self._beat()
        self.state.source_event(config, event, self._clock.now())
        name = config.name
        result = event.result
        if result is None:
            return
        if result.error is None:
            self._log.info("source.done", f"{result.name}: {result.size_bytes} bytes stored", name)
        else:
            self._log.error("source.failed", f"{result.name}: {result.error}", name)


def _secret_values(configs: list[BackupConfiguration]) -> set[str]:
    """The values of every secret the configurations reference that resolves now."""
    values = set()
    for config in configs:
        for ref in secret_refs(config):
            try:
                values.add(resolve_secret(ref).value)
            except ConfigError:
                continue  # reported where it is used
    return values
