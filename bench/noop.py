"""The cost of a no-op ``plan`` with 10,000 backups in the repository.

A real backup is made first (so the repository, its settings and one
manifest are exactly what ``apply`` writes), then 9,999 more backups are
entered: a manifest in a folder of its own for each and one catalog listing
them all, as 10,000 applies over 416 days would leave them. ``plan`` is then
a no-op (``--detailed-exitcode`` exits 0): the newest backup is an hour old
and retention keeps ten years.

Measured, median of several runs: the ``backupctl plan`` command (the wall
time a user waits, interpreter start included) and, in this process, observe
and plan alone.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

from bench.tools import Backupctl, run_measured

BACKUPS = 10_000
RUNS = 7
FIRST = datetime(2026, 1, 1, tzinfo=UTC)
NOW = "2026-01-01T01:00:00Z"


def run(scratch: Path, backupctl: Backupctl) -> dict[str, object]:
    backupctl.setup()
    work = scratch / "noop"
    config = _prepare(work, backupctl)
    argv = [backupctl.executable, "plan", "-f", str(config), "--now", NOW, "--detailed-exitcode"]
    command: list[float] = []
    rss: list[int] = []
    for _ in range(RUNS):
        measured = run_measured([argv], cwd=work, env=backupctl.env, log=work / "plan.log")
        command.append(measured.seconds)
        rss.append(measured.peak_rss_kib)
    in_process = _in_process(config)
    operations = _operations(config)
    return {
        "backups": BACKUPS,
        "runs": RUNS,
        "command": "backupctl plan -f WORK/noop.yaml --now 2026-01-01T01:00:00Z"
        " --detailed-exitcode   (exits 0: nothing to do)",
        "command_seconds": [round(s, 3) for s in command],
        "command_median_seconds": round(statistics.median(command), 3),
        "command_peak_rss_kib": max(rss),
        "in_process_seconds": [round(s, 4) for s in in_process],
        "in_process_median_seconds": round(statistics.median(in_process), 4),
        "startup_seconds": round(_startup(backupctl), 3),
        "storage_operations": operations,
        "storage_operations_one_backup": json.loads((work / ".ready").read_text())[
            "operations_one_backup"
        ],
    }


def _prepare(work: Path, backupctl: Backupctl) -> Path:
    """The configuration of a repository holding BACKUPS backups (made once, then reused)."""
    config = work / "noop.yaml"
    marker = work / ".ready"
    ready = f"{BACKUPS} backups, catalog with head, format 2"  # rebuilt when the layout changes
    if marker.exists() and json.loads(marker.read_text() or "{}").get("layout") == ready:
        return config
    if work.exists():
        subprocess.run(["rm", "-rf", str(work)], check=True)
    (work / "source").mkdir(parents=True)
    (work / "source" / "settings.json").write_text('{"region": "west"}\n')
    (work / "storage").mkdir()
    config.write_text(
        "apiVersion: backupctl/v1\n"
        "kind: BackupConfiguration\n"
        "metadata:\n"
        "  name: noop\n"
        "spec:\n"
        f"  storage: {{local: {{path: {work / 'storage'}}}}}\n"
        f"  encryption: {{certificate: {{file: {backupctl.keys / 'bench.cer'}}}}}\n"
        "  schedule: {enabled: true, frequencyHours: 12}\n"
        "  retention: {days: 3650, minBackups: 2}\n"
        "  sources:\n"
        f"    - {{name: settings, files: {{path: {work / 'source'}}}}}\n"
    )
    first = FIRST.strftime("%Y-%m-%dT%H:%M:%SZ")
    subprocess.run(
        [backupctl.executable, "apply", "-f", str(config), "--now", first],
        check=True,
        capture_output=True,
        env=backupctl.env,
    )
    one = _operations(config)
    _add_backups(work / "storage" / "noop")
    marker.write_text(json.dumps({"layout": ready, "operations_one_backup": one}))
    return config


def _add_backups(root: Path) -> None:
    """Enter BACKUPS - 1 older copies of the one real backup, an hour apart."""
    # Below the Repository's rules: a synthetic history, written directly.
    from reconciler.repository.catalog import write_catalog
    from reconciler.repository.records import dumps, record_to_json
    from reconciler.repository.store import Repository
    from reconciler.storage.local import LocalStorage
    from reconciler.timeutil import compact

    repository = Repository(LocalStorage(root), "noop")
    (real,) = repository.read_catalog().backups
    manifest = repository.read_manifest(real.id)
    records = [real]
    for index in range(1, BACKUPS):
        created = FIRST - timedelta(hours=index)
        record = replace(
            manifest,
            id=f"{compact(created)}-{index:06x}",
            created_at=created,
            started_at=created,
            completed_at=created + timedelta(seconds=3),
        )
        folder = root / "backups" / record.id
        folder.mkdir(parents=True)
        # Plain writes: the fsync per object of the storage layer would make
        # this set-up take minutes, and nothing here is timed.
        (folder / "manifest.json").write_bytes(dumps(record_to_json(record)))
        records.append(record.summary())
    write_catalog(repository.storage, tuple(records), ())


def _in_process(config: Path) -> list[float]:
    """Observe and plan in this process (no interpreter start, modules loaded)."""
    from reconciler.reconcile.prepared import prepare
    from reconciler.reconcile.session import make_plan
    from reconciler.spec import load_configurations
    from reconciler.timeutil import parse_time

    (configuration,) = load_configurations(config)
    now = parse_time(NOW)
    timings = []
    for _ in range(RUNS):
        start = time.perf_counter()
        plan, _observed = make_plan(prepare(configuration), now)
        timings.append(time.perf_counter() - start)
        if plan.actions:
            raise RuntimeError(f"the plan is not a no-op: {[a.name for a in plan.actions]}")
    return timings


class _Counting:
    """A storage that counts the calls made to it, by method name."""

    def __init__(self, inner: object) -> None:
        self._inner = inner
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str) -> object:
        value = getattr(self._inner, name)
        if not callable(value):
            return value

        def counted(*args: object, **kwargs: object) -> object:
            self.calls[name] = self.calls.get(name, 0) + 1
            return value(*args, **kwargs)

        return counted


def _operations(config: Path) -> dict[str, int]:
    """The storage calls of one observe + plan, by method (the plan must be a no-op)."""
    from reconciler.reconcile.prepared import prepare
    from reconciler.reconcile.session import make_plan
    from reconciler.repository.store import Repository
    from reconciler.spec import load_configurations
    from reconciler.timeutil import parse_time

    (configuration,) = load_configurations(config)
    prepared = prepare(configuration)
    counting = _Counting(prepared.repository.storage)
    prepared = replace(prepared, repository=Repository(counting, configuration.name))  # type: ignore[arg-type]
    plan, _observed = make_plan(prepared, parse_time(NOW))
    if plan.actions:
        raise RuntimeError(f"the plan is not a no-op: {[a.name for a in plan.actions]}")
    return dict(sorted(counting.calls.items()))


def target(result: dict[str, object]) -> dict[str, object]:
    """The issue's target: the plan's storage calls the same with one and with 10,000 backups."""
    many = cast(dict[str, int], result["storage_operations"])
    one = cast(dict[str, int], result["storage_operations_one_backup"])
    calls = ", ".join(f"{k} {v}" for k, v in many.items())
    return {
        "target": f"no-op plan: storage calls the same with 1 and {BACKUPS:,} backups",
        "value": f"{sum(many.values())} with {BACKUPS:,}, {sum(one.values())} with 1"
        f" ({calls}; plan command {result['command_median_seconds']:.2f} s)",
        "met": many == one,
    }


def _startup(backupctl: Backupctl) -> float:
    """``backupctl --version``: the interpreter and import cost in every command."""
    timings = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(
            [backupctl.executable, "--version"], check=True, capture_output=True, env=backupctl.env
        )
        timings.append(time.perf_counter() - start)
    return statistics.median(timings)


def print_result(result: dict[str, object]) -> None:
    print(f"\nno-op plan with {result['backups']:,} backups (local storage):")
    print(
        f"  backupctl plan command: median {result['command_median_seconds']:.3f} s"
        f" (backupctl --version: {result['startup_seconds']:.3f} s)"
    )
    print(f"  observe + plan in process: median {result['in_process_median_seconds']:.4f} s")
    print(
        f"  storage calls of one plan: {result['storage_operations']}"
        f" (with one backup: {result['storage_operations_one_backup']})"
    )


if __name__ == "__main__":
    import sys

    from bench.dataset import SPECS, Dataset

    scratch = Path(os.environ.get("BACKUPCTL_BENCH_DIR", "/var/tmp/backupctl-bench"))
    tool = Backupctl(scratch, Dataset(SPECS["smoke"], scratch, 0, 0, 0))
    outcome = run(scratch, tool)
    print_result(outcome)
    json.dump(outcome, sys.stdout, indent=2)
