"""What the daemon loop is doing and last did, for the status page.

The loop tells ``DaemonState`` about each reconcile through the callbacks it
already has (a source starting or ending, bytes stored, an action's outcome,
the result); the web server's threads read a ``snapshot``: frozen values
copied under a lock held for no longer than the copy, so reading never waits
for a reconcile and never sees one half-recorded. Byte counts arrive from the
backup pipeline's threads, so every method takes the lock."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from types import MappingProxyType

from reconciler.backup.engine import SourceEvent
from reconciler.reconcile.actions import RunBackup
from reconciler.reconcile.apply import Outcome, OutcomeStatus
from reconciler.spec.model import BackupConfiguration
from reconciler.usecases.status import Activity, alert_kind_of
from reconciler.usecases.status_model import AlertKind, LastReconcile, Progress


@dataclass(frozen=True)
class DaemonSnapshot:
    """The configurations the daemon runs and what it knows of each, at one moment."""

    configurations: tuple[BackupConfiguration, ...]
    activity: Mapping[str, Activity]
    """By configuration name: what ``usecases.status.build_status`` takes."""


@dataclass
class _Record:
    """One configuration's activity while it changes (only touched under the lock)."""

    last: LastReconcile | None = None
    failure_kind: AlertKind | None = None
    running: Progress | None = None
    failures: list[AlertKind | None] = field(default_factory=list)
    """The kinds of what failed in the reconcile under way (None: a backup whose
    failed sources the catalog records)."""


class DaemonState:
    """Thread-safe record of each configuration's last reconcile and running backup."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._configs: tuple[BackupConfiguration, ...] = ()
        self._records: dict[str, _Record] = {}

    def snapshot(self) -> DaemonSnapshot:
        """A consistent copy, taken without waiting for the loop."""
        with self._lock:
            activity = {
                name: Activity(r.last, r.failure_kind, r.running)
                for name, r in self._records.items()
            }
            return DaemonSnapshot(self._configs, MappingProxyType(activity))

    # ------------------------------------------------------------- the loop's side

    def adopted(self, configs: Sequence[BackupConfiguration]) -> None:
        """The daemon runs ``configs`` from now on; a configuration gone is forgotten."""
        with self._lock:
            self._configs = tuple(configs)
            names = {c.name for c in configs}
            self._records = {n: r for n, r in self._records.items() if n in names}

    def source_event(self, config: BackupConfiguration, event: SourceEvent, now: datetime) -> None:
        """A source of the backup being made starts (``event.result`` None) or ends."""
        with self._lock:
            record = self._record(config.name)
            progress = record.running or Progress(None, None, 0, len(config.sources), 0, None, now)
            if event.result is None:
                progress = replace(
                    progress,
                    source=event.source,
                    bytes_stored=0,
                    bytes_expected=event.expected_bytes,
                )
            else:
                progress = replace(
                    progress,
                    source=None,
                    sources_done=progress.sources_done + 1,
                    bytes_stored=0,
                    bytes_expected=None,
                )
            record.running = progress

    def bytes_stored(self, name: str, count: int) -> None:
        """The backup being made stored ``count`` more bytes of its current source."""
        with self._lock:
            record = self._records.get(name)
            if record is not None and record.running is not None:
                record.running = replace(
                    record.running, bytes_stored=record.running.bytes_stored + count
                )

    def outcome(self, name: str, outcome: Outcome) -> None:
        """An action ended; a backup run's end ends the progress."""
        with self._lock:
            record = self._record(name)
            if isinstance(outcome.action, RunBackup):
                record.running = None
            if outcome.status is OutcomeStatus.FAILED:
                recorded = outcome.error is None and outcome.backup is not None
                kind = None if recorded else _kind(outcome.error)
                record.failures.append(kind)

    def reconciled(
        self,
        name: str,
        at: datetime,
        result: str,
        message: str | None = None,
        error: BaseException | None = None,
    ) -> None:
        """A reconcile ended with ``result`` (success, failed, locked): ``message``
        and ``error`` say what failed when it failed before any action's outcome."""
        with self._lock:
            record = self._record(name)
            kinds = record.failures
            if error is not None:
                kinds = [*kinds, alert_kind_of(error)]
            failed = [k for k in kinds if k is not None]
            record.last = LastReconcile(at, str(result), message if result != "success" else None)
            record.failure_kind = failed[0] if failed and result == "failed" else None
            record.failures = []
            record.running = None

    def _record(self, name: str) -> _Record:
        return self._records.setdefault(name, _Record())


def _kind(error: BaseException | None) -> AlertKind:
    return AlertKind.GENERAL if error is None else alert_kind_of(error)
