"""The daemon loop on a virtual clock: days of schedule in well under a second each.

Real configuration files, real backups into a local folder; only time is
virtual (``VirtualClock`` jumps to each deadline), so these tests can assert
the exact moments the loop wakes, backs up and prunes."""

from __future__ import annotations

import gc
import io
import json
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from reconciler.daemon.clock import VirtualClock
from reconciler.daemon.logs import EventLog
from reconciler.daemon.loop import Daemon
from reconciler.daemon.metrics import DaemonMetrics
from reconciler.errors import ConfigError
from reconciler.repository.layout import LOCK_KEY
from reconciler.repository.records import dumps
from reconciler.repository.store import Repository
from reconciler.storage.local import LocalStorage
from reconciler.timeutil import format_time
from reconciler.usecases.status import build_status
from reconciler.usecases.status_model import AlertKind, ConfigurationStatus, Health

DEMO_CERT = Path(__file__).resolve().parents[2] / "examples" / "keys" / "demo-backup.cer"
T0 = datetime(2026, 11, 20, 0, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)

CONFIG = """\
apiVersion: backupctl/v1
kind: BackupConfiguration
metadata:
  name: {name}
spec:
  storage:
    local: {{path: {storage}}}
  encryption:
    certificate: {{file: backup.cer}}
  schedule:
    frequencyHours: 12
  retention:
    days: 1
    minBackups: 2
  trigger: "{trigger}"
  sources:
    - name: settings
      files: {{path: data}}
{extra}"""

FAILING_SOURCE = """\
    - name: vault
      command: {backup: [sh, -c, "echo vault is sealed >&2; exit 3"]}
"""


@dataclass
class Site:
    root: Path
    log: io.StringIO
    metrics: DaemonMetrics

    @property
    def configs(self) -> Path:
        return self.root / "configs"

    def write(
        self, name: str = "region", trigger: str = "", storage: str = "../storage", extra: str = ""
    ) -> None:
        text = CONFIG.format(name=name, storage=storage, trigger=trigger, extra=extra)
        (self.configs / f"{name}.yaml").write_text(text)

    def daemon(self, clock: VirtualClock, interval: timedelta) -> Daemon:
        log = EventLog(self.log, json_lines=True, clock=clock.now)
        return Daemon(self.configs, interval.total_seconds(), clock, log, self.metrics, jitter=0)

    def backups(self, name: str = "region") -> list[tuple[datetime, str, str]]:
        """(created at, status, trigger) of every backup in the catalog, oldest first."""
        repository = Repository(LocalStorage(self.root / "storage" / name), name)
        return [(b.created_at, str(b.status), b.trigger) for b in repository.read_catalog().backups]

    def events(self) -> list[dict[str, str]]:
        return [json.loads(line) for line in self.log.getvalue().splitlines()]

    def metric(self, name: str, **labels: str) -> float | None:
        return self.metrics.registry.get_sample_value(name, labels)


@pytest.fixture
def site(tmp_path: Path) -> Site:
    (tmp_path / "configs").mkdir()
    (tmp_path / "storage").mkdir()
    (tmp_path / "configs" / "data").mkdir()
    (tmp_path / "configs" / "data" / "region.json").write_text('{"region": "west"}\n')
    shutil.copy(DEMO_CERT, tmp_path / "configs" / "backup.cer")
    site = Site(tmp_path, io.StringIO(), DaemonMetrics())
    site.write()
    return site


Script = dict[datetime, Callable[[], None]]


def run_until(
    site: Site, interval: timedelta, end: datetime, script: Script | None = None
) -> VirtualClock:
    """Run the loop from T0 until virtual time ``end``; ``script`` runs callables at wake-ups."""
    actions = dict(script or {})
    holder: list[Daemon] = []

    def on_wake(now: datetime) -> None:
        for moment in sorted(m for m in actions if m <= now):
            actions.pop(moment)()
        if now >= end:
            holder[0].stop()

    clock = VirtualClock(T0, on_wake)
    daemon = site.daemon(clock, interval)
    holder.append(daemon)
    daemon.load()
    daemon.run()
    return clock


def test_three_days_of_schedule_back_up_every_12_hours_and_prune_after_a_day(site: Site) -> None:
    clock = run_until(site, timedelta(days=1), T0 + 72 * HOUR)
    # The interval is a day, but the loop wakes when the next backup falls due.
    assert clock.sleeps == [T0 + h * HOUR for h in (12, 24, 36, 48, 60, 72)]
    # Backups at 0, 12, ... 60 h; by 60 h retention (1 day, min 2) kept the last day's.
    created = [c for c, status, _ in site.backups()]
    assert created == [T0 + h * HOUR for h in (36, 48, 60)]
    assert {status for _, status, _ in site.backups()} == {"Succeeded"}
    assert site.metric("backupctl_reconcile_total", configuration="region", result="success") == 6
    assert site.metric("backupctl_backup_duration_seconds_count", configuration="region") == 6
    assert site.metric("backupctl_backup_last_status", configuration="region") == 0
    assert site.metric("backupctl_plan_pending_actions", configuration="region") == 0
    assert site.metric("backupctl_storage_available", configuration="region") == 1
    last_success = site.metric(
        "backupctl_backup_last_success_timestamp_seconds", configuration="region"
    )
    assert last_success is not None
    assert (T0 + 60 * HOUR).timestamp() <= last_success < (T0 + 61 * HOUR).timestamp()


def test_after_a_partial_backup_the_loop_wakes_to_retry_after_retry_after_minutes(
    site: Site,
) -> None:
    site.write(extra=FAILING_SOURCE)
    clock = run_until(site, timedelta(days=1), T0 + 2 * HOUR)
    half_hour = timedelta(minutes=30)
    assert clock.sleeps == [T0 + n * half_hour for n in (1, 2, 3, 4)]
    assert [(c, status) for c, status, _ in site.backups()] == [
        (T0 + n * half_hour, "PartiallySucceeded") for n in range(4)
    ]
    assert site.metric("backupctl_backup_last_status", configuration="region") == 1
    assert site.metric("backupctl_plan_pending_actions", configuration="region") == 1
    assert site.metric("backupctl_reconcile_total", configuration="region", result="failed") == 4
    failed = [e for e in site.events() if e["event"] == "source.failed"]
    assert len(failed) == 4 and "vault is sealed" in failed[0]["message"]


def test_a_changed_configuration_is_picked_up_and_an_invalid_one_keeps_the_last_valid(
    site: Site,
) -> None:
    def break_it() -> None:
        (site.configs / "region.yaml").write_text("apiVersion: backupctl/v1\nkind: [oops\n")

    script = {
        T0 + 1 * HOUR: lambda: site.write(trigger="restore-drill-1"),
        T0 + 2 * HOUR: break_it,
    }
    run_until(site, HOUR, T0 + 14 * HOUR, script)
    assert site.backups() == [
        (T0, "Succeeded", "scheduled"),
        (T0 + 1 * HOUR, "Succeeded", "on-demand"),
        # The file is invalid from 2 h on; the last valid configuration keeps its schedule.
        (T0 + 13 * HOUR, "Succeeded", "scheduled"),
    ]
    invalid = [e for e in site.events() if e["event"] == "config.invalid"]
    assert len(invalid) == 1, "reported once, not at every tick"
    assert invalid[0]["level"] == "error"
    assert "region.yaml" in invalid[0]["message"]
    assert "still running the last valid configuration (region)" in invalid[0]["message"]
    assert format_time(datetime.fromisoformat(invalid[0]["time"])) == format_time(T0 + 2 * HOUR)


def test_one_failing_configuration_does_not_block_the_others(site: Site) -> None:
    site.write(name="broken", storage="../no-such-share")
    run_until(site, HOUR, T0 + 2 * HOUR)
    assert [status for _, status, _ in site.backups()] == ["Succeeded"]
    assert site.metric("backupctl_storage_available", configuration="broken") == 0
    assert site.metric("backupctl_reconcile_total", configuration="broken", result="failed") == 2
    assert site.metric("backupctl_reconcile_total", configuration="region", result="success") == 2
    failures = [e for e in site.events() if e["event"] == "reconcile.failed"]
    assert {e["configuration"] for e in failures} == {"broken"}
    assert "no-such-share" in failures[0]["message"]


def test_a_locked_repository_is_reported_and_reconciled_once_it_is_free(site: Site) -> None:
    storage = site.root / "storage" / "region"
    storage.mkdir()
    other = {
        "host": "other-host.invalid",
        "pid": 4242,
        "nonce": "0the4500",
        "command": "backupctl apply",
        "createdAt": format_time(datetime.now(UTC)),
        "expiresAt": format_time(datetime.now(UTC) + timedelta(hours=1)),
    }
    (storage / LOCK_KEY).write_bytes(dumps(other))
    run_until(site, HOUR, T0 + 2 * HOUR, {T0 + 1 * HOUR: (storage / LOCK_KEY).unlink})
    assert site.backups() == [(T0 + 1 * HOUR, "Succeeded", "scheduled")]
    assert site.metric("backupctl_reconcile_total", configuration="region", result="locked") == 1
    [locked] = [e for e in site.events() if e["event"] == "reconcile.locked"]
    assert locked["level"] == "warning"
    assert "locked by backupctl apply (pid 4242 on other-host.invalid" in locked["message"]


def test_a_daemon_does_not_start_on_a_configuration_that_was_never_valid(site: Site) -> None:
    (site.configs / "region.yaml").write_text("kind: BackupConfiguration\n")
    with pytest.raises(ConfigError):
        site.daemon(VirtualClock(T0), HOUR).load()


def test_every_log_line_is_one_json_object_with_the_documented_fields(site: Site) -> None:
    run_until(site, HOUR, T0 + HOUR)
    events = site.events()
    assert events, "nothing was logged"
    for event in events:
        assert set(event) == {"time", "level", "configuration", "event", "message"}
    assert [e["event"] for e in events if e["configuration"] == "region"][-1] == "reconcile.done"


def test_a_daemon_keeps_nothing_out_of_the_collector_between_cycles(site: Site) -> None:
    """A daemon running for a year must not keep cycles made meanwhile: reading
    catalogs (a cycle does) exempts nothing from the cyclic collector."""
    gc.unfreeze()
    frozen_during_cycles = []

    def note_frozen() -> None:
        frozen_during_cycles.append(gc.get_freeze_count())

    run_until(site, timedelta(days=1), T0 + 24 * HOUR, {T0 + 12 * HOUR: note_frozen})

    assert frozen_during_cycles == [0]  # between cycles, nothing stays frozen
    assert gc.get_freeze_count() == 0
    site.backups()  # reads the catalog as a cycle does
    assert gc.get_freeze_count() == 0


# ------------------------------------------------------------------ the status page's view

# Well over the 16 MiB format 2 seals ahead of storing: some bytes are stored
# while the command still waits for the gate.
GATED_SOURCE = """\
    - name: slow
      command:
        backup: [sh, -c, "head -c 64000000 /dev/urandom; until [ -e gate ]; do sleep 0.02; done"]
"""


def status_now(daemon: Daemon, now: datetime) -> dict[str, ConfigurationStatus]:
    """What the status page shows, built from the daemon's snapshot as the web server does."""
    snapshot = daemon.state.snapshot()
    report = build_status(snapshot.configurations, now, snapshot.activity)
    return {c.name: c for c in report.configurations}


def test_the_status_page_sees_each_reconcile_and_what_its_failure_was(site: Site) -> None:
    site.write(extra=FAILING_SOURCE)
    site.write(name="broken", storage="../no-such-share")
    start = datetime.now(UTC).replace(microsecond=0)  # the demo certificate is valid now
    clock = VirtualClock(start)
    daemon = site.daemon(clock, HOUR)
    daemon.load()
    assert daemon.state.snapshot().activity == {}
    daemon.tick()
    shown = status_now(daemon, clock.now())
    region = shown["region"]
    assert region.last_reconcile is not None and region.last_reconcile.result == "failed"
    assert region.last_reconcile.at == start
    # The failed source is the catalog's alert; the reconcile's failure is not said twice.
    none_succeeded, failed_source = region.alerts
    assert (none_succeeded.severity, failed_source.severity) == (Health.CRITICAL, Health.WARNING)
    assert "holds no Succeeded backup" in none_succeeded.message
    assert "vault is sealed" in failed_source.message
    assert region.running is None
    broken = shown["broken"]
    assert broken.health is Health.CRITICAL
    assert [(a.kind, a.severity) for a in broken.alerts] == [
        (AlertKind.PATH_OR_PERMISSION, Health.CRITICAL),
        (AlertKind.CONNECTIVITY, Health.WARNING),
    ]
    assert "no-such-share" in broken.alerts[1].message
    site.write()  # the failing source is gone
    (site.configs / "broken.yaml").unlink()
    daemon.tick()
    shown = status_now(daemon, clock.now())
    assert list(shown) == ["region"]
    assert set(daemon.state.snapshot().activity) == {"region"}
    assert shown["region"].last_reconcile is not None
    assert shown["region"].last_reconcile.result == "success"
    assert shown["region"].last_reconcile.message is None


def test_a_backup_in_progress_is_seen_from_another_thread_and_ends_with_its_reconcile(
    site: Site,
) -> None:
    site.write(extra=GATED_SOURCE)
    clock = VirtualClock(datetime.now(UTC))
    daemon = site.daemon(clock, HOUR)
    daemon.load()
    ticking = threading.Thread(target=daemon.tick)
    ticking.start()
    try:
        deadline = time.monotonic() + 30
        progress = None
        while time.monotonic() < deadline:
            progress = status_now(daemon, clock.now())["region"].running
            if progress is not None and progress.source == "slow" and progress.bytes_stored:
                break
            time.sleep(0.02)
        assert progress is not None and progress.source == "slow", progress
        assert (progress.sources_done, progress.sources_total) == (1, 2)
        assert progress.bytes_stored > 0
        assert progress.backup_id is not None  # the catalog's Running entry names it
    finally:
        (site.configs / "gate").touch()
        ticking.join(timeout=60)
    region = status_now(daemon, clock.now())["region"]
    assert region.running is None
    assert region.last_success is not None and region.last_success.id == progress.backup_id
    assert region.health is Health.OK
