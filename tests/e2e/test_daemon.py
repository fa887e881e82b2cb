"""`backupctl daemon` as an operator runs it: metrics, health, reloads, SIGTERM."""

from __future__ import annotations

import json
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.processes import Background
from tests.e2e.region import Region, wait_for_file
from tests.e2e.repository_state import assert_settled, read_state

METRICS = (
    "backupctl_backup_last_success_timestamp_seconds",
    "backupctl_backup_last_status",
    "backupctl_backup_duration_seconds",
    "backupctl_backup_size_bytes",
    "backupctl_reconcile_total",
    "backupctl_plan_pending_actions",
    "backupctl_storage_available",
)

OFFSITE_PASSWORD = "Sw0rdfish-never-logged"

OFFSITE = """\
---
apiVersion: backupctl/v1
kind: BackupConfiguration
metadata:
  name: offsite
spec:
  storage:
    smb:
      path: //127.0.0.1/nothing/here
      port: 1
      username: backupop
      password: {env: OFFSITE_SMB_PASSWORD}
  encryption:
    certificate: {file: keys/demo-backup.cer}
  sources:
    - name: root-ca
      files: {path: stamp/ca}
"""


Launcher = Callable[..., Background]


@pytest.fixture
def region(tmp_path: Path) -> Region:
    return Region.create(tmp_path / "ws")


@pytest.fixture
def launch(region: Region) -> Iterator[Launcher]:
    """Start daemons on the region (JSON logs, an ephemeral port); kill leftovers at the end."""
    daemons: list[Background] = []

    def _launch(*args: str, env: dict[str, str] | None = None) -> Background:
        process = region.start(
            "daemon", "-f", region.config, "--listen", "127.0.0.1:0", "--log-format", "json",
            *args, env=env,
        )  # fmt: skip
        daemons.append(process)
        process.wait_for('"event": "daemon.started"')
        return process

    yield _launch
    for process in daemons:
        if process.process.poll() is None:
            process.kill9()


def address(daemon: Background) -> str:
    for event in events(daemon):
        if event["event"] == "daemon.listening":
            return str(event["message"]).rsplit(" ", 1)[1]
    raise AssertionError(daemon.output())


def events(daemon: Background) -> list[dict[str, object]]:
    return [json.loads(line) for line in daemon.err.read_text().splitlines() if line]


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def sample(metrics: str, name: str, **labels: str) -> float | None:
    """The value of one sample in the Prometheus text format, None when absent."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in metrics.splitlines():
        if line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        head, _, rest = series.partition("{")
        found = ",".join(sorted(rest.rstrip("}").split(","))) if rest else ""
        if head == name and found == wanted:
            return float(value)
    return None


def succeeded(region: Region) -> int:
    """How many Succeeded backups the catalog lists (0 before the repository exists)."""
    if not (region.repository / "catalog.json").exists():
        return 0
    return len(read_state(region.repository).succeeded)


def failed_reconciles(base: str, configuration: str) -> float | None:
    metrics = get(f"{base}/metrics")[1]
    return sample(
        metrics, "backupctl_reconcile_total", configuration=configuration, result="failed"
    )


def wait_until(condition: object, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# "At once" on a loaded two-core machine: the daemon exits in well under a second
# when idle, but a busy machine may not schedule it for a while. The tests that
# check it sleep 60 s between ticks (and their backup never ends), so a daemon
# that finished its sleep or its backup first would take a minute or forever.
AT_ONCE = 15.0


def stop(daemon: Background) -> float:
    """SIGTERM; return how long the daemon took to exit (it must exit 0)."""
    started_at = time.monotonic()
    daemon.signal(signal.SIGTERM)
    result = daemon.finish(timeout=90)
    took = time.monotonic() - started_at
    assert result.code == 0, result.text
    assert "Traceback" not in result.text
    return took


def test_a_daemon_backs_up_serves_metrics_and_health_and_stops_at_once_on_sigterm(
    region: Region, launch: Launcher
) -> None:
    region.config.write_text(region.config.read_text() + OFFSITE)
    # One tick does it all; the next is a minute away, so SIGTERM must cut the sleep short.
    daemon = launch("--interval", "60", env={"OFFSITE_SMB_PASSWORD": OFFSITE_PASSWORD})
    base = f"http://{address(daemon)}"
    wait_until(lambda: "backup.run: backup" in daemon.err.read_text(), "the first backup")
    wait_until(
        lambda: failed_reconciles(base, "offsite"), "the offsite configuration to be reconciled"
    )
    # The gauges are set after the log lines above; the tick is over (and every
    # gauge of it set) once the daemon says when it reconciles next. A busy
    # machine showed the gap between the two.
    wait_until(lambda: '"event": "daemon.sleep"' in daemon.err.read_text(), "the first tick")
    code, body = get(f"{base}/healthz")
    assert code == 200 and json.loads(body)["status"] == "ok"
    code, metrics = get(f"{base}/metrics")
    assert code == 200
    for name in METRICS:
        assert f"# TYPE {name.removesuffix('_total')}" in metrics, name
    assert sample(metrics, "backupctl_backup_last_status", configuration="quickstart") == 0
    assert sample(metrics, "backupctl_storage_available", configuration="quickstart") == 1
    assert sample(metrics, "backupctl_storage_available", configuration="offsite") == 0
    assert sample(metrics, "backupctl_plan_pending_actions", configuration="quickstart") == 0
    assert sample(metrics, "backupctl_backup_size_bytes_count", configuration="quickstart") == 1
    success = sample(
        metrics, "backupctl_backup_last_success_timestamp_seconds", configuration="quickstart"
    )
    assert success is not None and abs(success - time.time()) < 120
    assert get(f"{base}/nothing")[0] == 404

    assert stop(daemon) < AT_ONCE
    log = daemon.err.read_text()
    assert OFFSITE_PASSWORD not in log + daemon.out.read_text()
    for event in events(daemon):
        assert set(event) == {"time", "level", "configuration", "event", "message"}
    failures = [e for e in events(daemon) if e["event"] == "reconcile.failed"]
    assert failures and {e["configuration"] for e in failures} == {"offsite"}
    assert events(daemon)[-1]["event"] == "daemon.stopped"
    assert succeeded(region) == 1


def test_a_daemon_picks_up_a_new_trigger_and_keeps_running_through_an_invalid_file(
    region: Region, launch: Launcher
) -> None:
    daemon = launch("--interval", "1")
    base = f"http://{address(daemon)}"
    wait_until(lambda: succeeded(region) == 1, "the first backup")
    region.set_trigger("drill-1")
    wait_until(lambda: succeeded(region) == 2, "the triggered backup")
    good = region.config.read_text()
    region.config.write_text(good.replace("kind: BackupConfiguration", "kind: [broken"))
    wait_until(lambda: "config.invalid" in daemon.err.read_text(), "the invalid file reported")
    assert get(f"{base}/healthz")[0] == 200
    region.config.write_text(good.replace('trigger: "drill-1"', 'trigger: "drill-2"'))
    wait_until(lambda: succeeded(region) == 3, "the fixed file used")
    [invalid] = [e for e in events(daemon) if e["event"] == "config.invalid"]
    assert invalid["level"] == "error" and "quickstart.yaml" in str(invalid["message"])
    stop(daemon)
    assert [b.trigger for b in read_state(region.repository).manifests.values()].count(
        "on-demand"
    ) == 2


def test_sigterm_during_a_backup_abandons_it_cleanly_and_exits_0_at_once(
    region: Region, launch: Launcher
) -> None:
    marker = region.root / "reading"
    env = {"SLOW_DUMP_MARKER": str(marker), "SLOW_DUMP_GO": str(region.root / "never")}
    daemon = launch("--interval", "60", env=env)
    wait_for_file(marker, daemon)
    assert stop(daemon) < AT_ONCE
    [stopped] = [e for e in events(daemon) if e["event"] == "daemon.stopped"]
    assert "SIGTERM" in str(stopped["message"]) and "nothing of it was committed" in str(
        stopped["message"]
    )
    state = assert_settled(region.repository, region.key)
    assert state.catalog == {}, "the abandoned backup is not in the catalog"
    assert not state.folders, "what it wrote was removed"
    # And the next apply has nothing to clean up: it just makes the backup.
    result = region.run("apply", "-f", region.config)
    assert result.code == 0, result.text
    assert "staging.cleanup" not in result.out


def test_a_daemon_refuses_to_start_on_an_invalid_configuration(region: Region) -> None:
    region.config.write_text("apiVersion: backupctl/v1\nkind: BackupConfiguration\n")
    result = region.run("daemon", "-f", region.config, "--interval", "1")
    assert result.code == 1
    assert "Traceback" not in result.text
    assert "quickstart.yaml" in result.err


def test_a_daemon_says_clearly_when_it_cannot_listen(region: Region, launch: Launcher) -> None:
    first = launch("--interval", "60")
    taken = address(first)
    result = region.run("daemon", "-f", region.config, "--listen", taken)
    assert result.code == 1, result.text
    assert f"cannot listen on {taken}" in result.err
    assert "Traceback" not in result.text
    stop(first)
