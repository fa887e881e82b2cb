"""DaemonState: what the loop records, read by other threads as consistent copies."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from reconciler.backup.engine import SourceEvent
from reconciler.daemon.state import DaemonState
from reconciler.errors import StorageFullError
from reconciler.reconcile.actions import RunBackup
from reconciler.reconcile.apply import Outcome, OutcomeStatus
from reconciler.repository.records import SourceResult, SourceStatus
from reconciler.usecases.status_model import AlertKind
from tests.unit.planning_fixtures import make_config

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
CONFIG = make_config()
RUN = RunBackup("no backup exists yet", "scheduled")


def done(name: str) -> SourceEvent:
    result = SourceResult(name, "command", SourceStatus.SUCCEEDED, 10, 10, 1, None, None)
    return SourceEvent(name, result)


def test_bytes_counted_from_many_threads_are_all_counted_and_a_snapshot_does_not_change() -> None:
    state = DaemonState()
    state.adopted([CONFIG])
    state.source_event(CONFIG, SourceEvent("key-vault", None, 5000), NOW)
    before = state.snapshot()

    def store() -> None:
        for _ in range(10_000):
            state.bytes_stored(CONFIG.name, 1)

    threads = [threading.Thread(target=store) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    progress = state.snapshot().activity[CONFIG.name].running
    assert progress is not None
    assert (progress.source, progress.bytes_stored, progress.bytes_expected) == (
        "key-vault",
        40_000,
        5000,
    )
    assert (progress.sources_done, progress.sources_total, progress.started_at) == (0, 1, NOW)
    old = before.activity[CONFIG.name].running
    assert old is not None and old.bytes_stored == 0


def test_a_source_ending_counts_it_and_the_run_ending_ends_the_progress() -> None:
    state = DaemonState()
    state.source_event(CONFIG, SourceEvent("key-vault", None, None), NOW)
    state.bytes_stored(CONFIG.name, 7)
    state.source_event(CONFIG, done("key-vault"), NOW + timedelta(seconds=5))
    progress = state.snapshot().activity[CONFIG.name].running
    assert progress is not None
    assert (progress.source, progress.sources_done, progress.bytes_stored) == (None, 1, 0)
    state.outcome(CONFIG.name, Outcome(RUN, OutcomeStatus.DONE, "backup made"))
    assert state.snapshot().activity[CONFIG.name].running is None


def test_the_kind_of_a_failed_actions_error_is_kept_until_the_next_reconcile() -> None:
    state = DaemonState()
    full = StorageFullError("cannot write packs/1a.pack: no space left on the device")
    state.outcome(CONFIG.name, Outcome(RUN, OutcomeStatus.FAILED, str(full), error=full))
    state.reconciled(CONFIG.name, NOW, "failed", f"backup.run: {full}")
    activity = state.snapshot().activity[CONFIG.name]
    assert activity.failure_kind is AlertKind.CAPACITY
    assert activity.last_reconcile is not None
    assert activity.last_reconcile.message == f"backup.run: {full}"
    state.reconciled(CONFIG.name, NOW + timedelta(hours=1), "success", "ignored")
    activity = state.snapshot().activity[CONFIG.name]
    assert activity.failure_kind is None
    assert activity.last_reconcile is not None and activity.last_reconcile.message is None


def test_a_configuration_no_longer_run_is_forgotten() -> None:
    state = DaemonState()
    other = make_config(name="region-east", origin=CONFIG.origin, storage=CONFIG.storage)
    state.adopted([CONFIG, other])
    state.reconciled(CONFIG.name, NOW, "success")
    state.reconciled(other.name, NOW, "locked", "held by another replica")
    state.adopted([other])
    snapshot = state.snapshot()
    assert snapshot.configurations == (other,)
    assert set(snapshot.activity) == {"region-east"}
