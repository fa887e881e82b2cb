"""Two writers on one repository: never two backups at once.

The dump source records when each run starts and ends (``SLOW_DUMP_LOG``), so
the tests can prove that no two backups read it at the same time, whatever
the processes (applies or daemons) did."""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from reconciler.repository.layout import LOCK_KEY
from reconciler.repository.lock import read_lock
from reconciler.repository.records import dumps
from reconciler.storage.local import LocalStorage
from reconciler.timeutil import format_time, now_utc
from tests.e2e.conftest import assert_one_clear_error
from tests.e2e.opened import watch_opens
from tests.e2e.processes import Background
from tests.e2e.region import Region, assert_never_overlapping, dump_intervals, wait_for_file
from tests.e2e.repository_state import assert_settled, read_state

T1 = "2026-11-01T00:00:00Z"
T2 = "2026-11-01T13:00:00Z"


@pytest.fixture
def region(tmp_path: Path) -> Iterator[Region]:
    region = Region.create(tmp_path / "ws")
    yield region
    (region.root / "go").touch()  # release any dump still waiting


def write_stale_lock(region: Region) -> None:
    """A lock left by a process on another host whose lease expired an hour ago."""
    expired = now_utc() - timedelta(hours=1)
    region.repository.mkdir(parents=True, exist_ok=True)
    (region.repository / LOCK_KEY).write_bytes(
        dumps(
            {
                "host": "crashed-host.invalid",
                "pid": 4242,
                "nonce": "5ca1ab1e",
                "command": "backupctl daemon",
                "createdAt": format_time(expired - timedelta(minutes=5)),
                "expiresAt": format_time(expired),
            }
        )
    )


def held_mid_backup(region: Region, now: str, log: Path) -> Background:
    """An apply stopped inside its backup (the dump waits for the file ``go``)."""
    marker = region.root / "reading"
    env = {
        "SLOW_DUMP_MARKER": str(marker),
        "SLOW_DUMP_GO": str(region.root / "go"),
        "SLOW_DUMP_LOG": str(log),
    }
    process = region.start_apply(now, env)
    wait_for_file(marker, process)
    return process


def test_an_apply_on_a_locked_repository_fails_at_once_naming_the_holder(region: Region) -> None:
    holder = held_mid_backup(region, T1, region.root / "dumps.log")
    started = time.monotonic()
    second = region.apply(T2)
    # "At once", with room for a busy machine: waiting would last as long as the holder.
    assert time.monotonic() - started < 30
    assert_one_clear_error(
        second,
        "the repository quickstart is locked by backupctl apply",
        f"pid {holder.pid} on {socket.gethostname()}",
        "--lock-timeout",
    )
    lock = (region.repository / LOCK_KEY).read_bytes()
    plan = region.run("plan", "-f", region.config, "--now", T2)
    assert plan.code == 0, "plan needs no lock: it neither waits nor fails"
    assert (region.repository / LOCK_KEY).read_bytes() == lock
    (region.root / "go").touch()
    assert holder.finish().code == 0
    assert len(read_state(region.repository).succeeded) == 1


def test_an_apply_with_a_lock_timeout_waits_its_turn_then_runs(region: Region) -> None:
    log = region.root / "dumps.log"
    holder = held_mid_backup(region, T1, log)
    with watch_opens(region.repository / LOCK_KEY) as lock_read:
        waiting = region.start_apply(T2, {"SLOW_DUMP_LOG": str(log)}, "--lock-timeout", "60")
        lock_read(lambda: still_running(waiting), 60)  # it found the lock held
    # It polls every second: a second read proves it kept waiting past its first try.
    with watch_opens(region.repository / LOCK_KEY) as lock_read:
        lock_read(lambda: still_running(waiting), 60)
    assert waiting.process.poll() is None, "it waits instead of failing"
    (region.root / "go").touch()
    assert holder.finish().code == 0
    result = waiting.finish()
    assert result.code == 0, result.text
    assert "backup.run: done" in result.out
    spans = dump_intervals(log)
    assert len(spans) == 2
    assert_never_overlapping(spans)
    assert len(assert_settled(region.repository, region.key).succeeded) == 2


def test_two_applies_taking_over_the_same_stale_lock_at_once_run_one_backup(
    region: Region,
) -> None:
    write_stale_lock(region)
    log = region.root / "dumps.log"
    env = {
        "BACKUPCTL_FAILPOINTS": "lock-stale:stop",
        "SLOW_DUMP_LOG": str(log),
        "SLOW_DUMP_SECONDS": "1",
    }
    racers = [region.start_apply(T1, env) for _ in range(2)]
    for racer in racers:
        racer.wait_for("failpoint lock-stale reached")
    # Both have read the same stale lock; let them go at the same moment.
    for racer in racers:
        racer.resume()
    results = [racer.finish() for racer in racers]
    codes = sorted(r.code for r in results)
    assert codes == [0, 1], [r.text for r in results]
    winner, loser = (racers[0], results[1]) if results[0].code == 0 else (racers[1], results[0])
    assert_one_clear_error(loser, "locked by backupctl apply", f"pid {winner.pid} on")
    assert len(dump_intervals(log)) == 1
    assert len(assert_settled(region.repository, region.key).succeeded) == 1


def test_a_taker_resuming_after_another_took_over_leaves_the_new_lock_alone(
    region: Region,
) -> None:
    write_stale_lock(region)
    log = region.root / "dumps.log"
    late = region.start_apply(
        T1, {"BACKUPCTL_FAILPOINTS": "lock-stale:stop", "SLOW_DUMP_LOG": str(log)}
    )
    late.wait_for("failpoint lock-stale reached")
    # Stopped between reading the stale lock and claiming it: meanwhile another
    # apply takes the same stale lock over and is mid-backup when it resumes.
    holder = held_mid_backup(region, T1, log)
    held = lock_nonce(region)
    late.resume()
    result = late.finish()
    assert_one_clear_error(result, "locked by backupctl apply", f"pid {holder.pid} on")
    assert lock_nonce(region) == held, "the new holder lost its lock"
    (region.root / "go").touch()
    assert holder.finish().code == 0
    assert len(dump_intervals(log)) == 1
    assert len(assert_settled(region.repository, region.key).succeeded) == 1


def lock_nonce(region: Region) -> str:
    holder = read_lock(LocalStorage(region.repository))
    assert holder is not None, "the repository is not locked"
    return holder.nonce


def test_a_taker_that_dies_holding_its_claim_does_not_block_the_repository(
    region: Region,
) -> None:
    write_stale_lock(region)
    taker = region.start_apply(T1, {"BACKUPCTL_FAILPOINTS": "lock-takeover:stop"})
    taker.wait_for("failpoint lock-takeover reached")
    refused = region.apply(T1)
    assert_one_clear_error(refused, f"locked by backupctl apply (takeover) (pid {taker.pid}")
    taker.kill9()
    result = region.apply(T1)
    assert result.code == 0, result.text
    assert len(assert_settled(region.repository, region.key).succeeded) == 1


def test_two_daemons_on_one_repository_never_back_up_at_once(region: Region) -> None:
    log = region.root / "dumps.log"
    env = {"SLOW_DUMP_LOG": str(log), "SLOW_DUMP_SECONDS": "2"}
    args = ("daemon", "-f", region.config, "--interval", "1", "--log-format", "json")
    daemons = [region.start(*args, env=env) for _ in range(2)]
    try:
        wait_until(lambda: len(succeeded_backups(region)) == 1)
        region.set_trigger("drill-1")
        wait_until(lambda: len(succeeded_backups(region)) == 2)
        # Whichever ticked while the other backed up found the lock taken.
        wait_until(lambda: locked_reported(daemons))
        # Two more ticks each: nothing else may run.
        ticks = [sleeps(d) + 2 for d in daemons]
        wait_until(lambda: all(sleeps(d) >= n for d, n in zip(daemons, ticks, strict=True)))
    finally:
        for daemon in daemons:
            daemon.signal(signal.SIGTERM)
        results = [daemon.finish(timeout=90) for daemon in daemons]
    assert [r.code for r in results] == [0, 0], [r.text for r in results]
    # Each daemon ticks every second; whichever came second found the lock taken.
    assert locked_reported(daemons)
    spans = dump_intervals(log)
    assert len(spans) == 2
    assert_never_overlapping(spans)
    assert len(assert_settled(region.repository, region.key).succeeded) == 2


def still_running(process: Background) -> None:
    assert process.process.poll() is None, f"it exited instead of waiting:\n{process.output()}"


def sleeps(daemon: Background) -> int:
    """How many ticks the daemon finished (each ends with a daemon.sleep line)."""
    return daemon.err.read_text().count('"event": "daemon.sleep"')


def locked_reported(daemons: list[Background]) -> bool:
    return any('"event": "reconcile.locked"' in d.err.read_text() for d in daemons)


def succeeded_backups(region: Region) -> set[str]:
    if not (region.repository / "catalog.json").exists():
        return set()
    return read_state(region.repository).succeeded


def wait_until(condition: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")
