"""Benchmark of deduplication (issue 14): backupctl and restic side by side, day after day.

    .venv/bin/python -m bench.dedup                 # the 1.1 GB set, 28 changed days
    .venv/bin/python -m bench.dedup --size smoke    # a 30 MB set, to try the benchmark itself
    .venv/bin/python -m bench.dedup --report-only   # judge saved results again, rewrite RESULTS.md

One repository per tool follows one data set through a month:

* day 0: the first backup (timed; restic's too);
* day 1: an unchanged backup on the same host (backupctl's file cache
  present; restic with its parent snapshot), timed, and the bytes it adds;
* day 2: an unchanged backup from a fresh host (``BACKUPCTL_CACHE_DIR`` an
  empty folder): the bytes it adds;
* a restore of the latest backup by each tool into a freshly made file system;
* days 3 to 30: each day the issue's 1 % change (200 random small files
  rewritten with new content of similar size, 6 MB appended to the log;
  ``bench.dedup_small_runs.change``), then a backup, retention keeping 7
  days (backupctl prunes and reclaims in the same ``apply``; restic runs
  ``forget --keep-within 7d --prune`` once at the end);
* then the stored size against ``tar | zstd -3`` of the data set as it is on
  the last day, and a restore of the last backup (checked, timed).

The data set is the benchmark's (``bench.dataset``, generated or reused
under ``--scratch``); the days change a working copy beside it (hard links,
the log copied), never the generated set. Results go to
``bench/results/dedup-<size>.json`` and ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from bench import noop, report, scratchfs
from bench.dataset import SPECS, Dataset, ensure_dataset
from bench.dedup_small_runs import change, working_copy
from bench.run import (
    RESULTS_DIR,
    calibrate,
    check_restore,
    describe_machine,
    print_machine,
    remove_tree,
    warm,
    write_result,
)
from bench.tools import TIME, Backupctl, Measured, Restic, TarZstd, run_measured, tree_size

FIRST_DAY = datetime(2026, 1, 2, tzinfo=UTC)
RETENTION_DAYS = 7
CHANGED_DAYS = 28
FIRST = "first backup"
UNCHANGED = "unchanged, cache"
UNCHANGED_FRESH = "unchanged, fresh host"
RESTORE = "restore"
CHANGED = "after the 1 % change"
FORGET = "forget --keep-within 7d"
RESTORE_LAST = "restore, last day"


def _iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


class DailyBackupctl(Backupctl):
    """backupctl with a day step, a retention of 7 days and a cache folder per host."""

    def config(self, work: Path) -> Path:
        path = work / "bench.yaml"
        path.write_text(
            "apiVersion: backupctl/v1\n"
            "kind: BackupConfiguration\n"
            "metadata:\n"
            "  name: bench\n"
            "spec:\n"
            "  storage:\n"
            f"    local: {{path: {work / 'storage'}}}\n"
            "  encryption:\n"
            f"    certificate: {{file: {self.keys / 'bench.cer'}}}\n"
            "  schedule: {enabled: true, frequencyHours: 24}\n"
            f"  retention: {{days: {RETENTION_DAYS}, minBackups: 2}}\n"
            "  sources:\n"
            "    - name: data\n"
            f"      files: {{path: {self.dataset.root / 'data'}}}\n"
        )
        return path

    def backup_on(self, work: Path, when: datetime, cache: Path) -> Measured:
        argv = [self.executable, "apply", "-f", str(work / "bench.yaml"), "--now", _iso(when)]
        cache.mkdir(parents=True, exist_ok=True)
        env = dict(self.env, BACKUPCTL_CACHE_DIR=str(cache))
        return run_measured([argv], cwd=work, env=env, log=work / "backup.log")

    def backups(self, work: Path) -> int:
        listed = subprocess.run(
            [
                self.executable,
                "backups",
                "list",
                "-f",
                str(work / "bench.yaml"),
                "--output",
                "json",
            ],
            check=True,
            capture_output=True,
            env=self.env,
            text=True,
        ).stdout
        return len(json.loads(listed)["backups"])


class DailyRestic(Restic):
    """restic with each backup dated like backupctl's (``--time``)."""

    def backup_on(self, work: Path, when: datetime) -> Measured:
        argv = [
            self.executable,
            "-r",
            str(work / "repo"),
            "backup",
            "--host",
            "bench",
            "--time",
            when.strftime("%Y-%m-%d %H:%M:%S"),
            str(self.dataset.root / "data"),
        ]
        return run_measured([argv], cwd=work, env=self._env(work), log=work / "backup.log")

    def forget(self, work: Path) -> Measured:
        argv = [
            self.executable,
            "-r",
            str(work / "repo"),
            "forget",
            "--keep-within",
            f"{RETENTION_DAYS}d",
            "--prune",
        ]
        return run_measured([argv], cwd=work, env=self._env(work), log=work / "forget.log")


@dataclass(frozen=True)
class Step:
    round: int
    tool: str
    step: str
    day: int
    seconds: float
    peak_rss_kib: int
    cpu_seconds: float
    stored_bytes: int
    added_bytes: int
    load: float


class Recorder:
    """Every timed step, printed as it happens."""

    def __init__(self) -> None:
        self.steps: list[Step] = []
        self.round = 1

    def backup(
        self, tool: str, step: str, day: int, size: Callable[[], int], run: Callable[[], Measured]
    ) -> Step:
        before = size()
        os.sync()
        load = os.getloadavg()[0]
        measured = run()
        after = size()
        return self._add(
            Step(
                self.round,
                tool,
                step,
                day,
                measured.seconds,
                measured.peak_rss_kib,
                measured.cpu_seconds,
                after,
                after - before,
                load,
            )
        )

    def restore(self, tool: str, step: str, day: int, run: Callable[[], Measured]) -> Step:
        os.sync()
        load = os.getloadavg()[0]
        measured = run()
        return self._add(
            Step(
                self.round,
                tool,
                step,
                day,
                measured.seconds,
                measured.peak_rss_kib,
                measured.cpu_seconds,
                0,
                0,
                load,
            )
        )

    def _add(self, step: Step) -> Step:
        self.steps.append(step)
        added = f"  added {step.added_bytes / 1e6:9.2f} MB" if step.stored_bytes else ""
        print(
            f"  {step.round}/{step.day:2} {step.tool:9} {step.step:22} {step.seconds:7.2f} s"
            f" (CPU {step.cpu_seconds:5.2f} s)  RSS {step.peak_rss_kib / 1024:5.0f} MiB{added}"
        )
        return step


class Pair:
    """backupctl and restic, each with a repository of its own in ``folder``."""

    def __init__(
        self, scratch: Path, folder: Path, working: Dataset, record: Recorder, fresh_fs: bool
    ) -> None:
        self.scratch = scratch
        self.folder = folder
        self.working = working
        self.record = record
        self.fresh_fs = fresh_fs
        self.ours = DailyBackupctl(scratch, working)
        self.ours.setup()
        self.theirs = DailyRestic(scratch, working)
        self.our_work = folder / "backupctl"
        self.restic_work = folder / "restic"
        self.host_cache = folder / "cache-host"
        self.ours.prepare(self.our_work)
        self.theirs.prepare(self.restic_work)

    def ours_size(self) -> int:
        return tree_size(self.our_work / "storage")

    def restic_size(self) -> int:
        return tree_size(self.restic_work / "repo")

    def backup_ours(self, day: int, step: str, cache: Path | None = None) -> None:
        when = FIRST_DAY + timedelta(days=day)
        warm(self.working.root / "data")
        self.record.backup(
            "backupctl",
            step,
            day,
            self.ours_size,
            partial(self.ours.backup_on, self.our_work, when, cache or self.host_cache),
        )

    def backup_restic(self, day: int, step: str) -> None:
        when = FIRST_DAY + timedelta(days=day)
        warm(self.working.root / "data")
        self.record.backup(
            "restic",
            step,
            day,
            self.restic_size,
            partial(self.theirs.backup_on, self.restic_work, when),
        )

    def both(self, day: int, step: str, restic_first: bool) -> None:
        if restic_first:
            self.backup_restic(day, step)
        self.backup_ours(day, step)
        if not restic_first:
            self.backup_restic(day, step)

    def restore_both(self, day: int, step: str, full: bool, restic_first: bool = False) -> None:
        tools: list[tuple[Backupctl | Restic, Path]] = [
            (self.ours, self.our_work),
            (self.theirs, self.restic_work),
        ]
        for runner, work in reversed(tools) if restic_first else tools:
            place_context: contextlib.AbstractContextManager[Path] = (
                scratchfs.fresh(self.scratch)
                if self.fresh_fs
                else _nullplace(self.folder / "restore")
            )
            with place_context as place:
                target = place / "restored"
                self.record.restore(runner.name, step, day, partial(runner.restore, work, target))
                check_restore(self.working, runner.restored_root(target), full=full)
                remove_tree(target)


def run_days(size: str, scratch: Path, days: int, rounds: int, keep: bool) -> dict[str, Any]:
    spec = SPECS[size]
    print(f"\ndata set {size}: {spec.description}")
    dataset = ensure_dataset(spec, scratch)
    folder = scratch / "dedup"
    remove_tree(folder)
    working = Dataset(spec, folder / "set", dataset.files, dataset.folders, dataset.total_bytes)
    working_copy(dataset.root / "data", working.root / "data")
    total = dataset.total_bytes
    print(f"  working copy {working.root / 'data'}: {total:,} bytes")
    fresh_fs = scratchfs.unavailable(scratch) is None
    if not fresh_fs:
        print("  cannot make fresh file systems here: restoring into the scratch file system")
    record = Recorder()

    # Timed targets from several rounds (this machine is shared and noisy); every
    # round but the first starts afresh and ends after the restore.
    for number in range(rounds, 1, -1):
        record.round = number
        print(
            f"\nround {number}: first backup, unchanged backup, restore (repositories of its own)"
        )
        extra = Pair(scratch, folder / f"round-{number}", working, record, fresh_fs)
        extra.both(0, FIRST, restic_first=number % 2 == 0)
        extra.both(1, UNCHANGED, restic_first=number % 2 == 1)
        extra.restore_both(1, RESTORE, full=False, restic_first=number % 2 == 0)
        remove_tree(extra.folder)

    record.round = 1
    pair = Pair(scratch, folder / "round-1", working, record, fresh_fs)
    print(
        "\nround 1, day 0: first backup; day 1: unchanged, same host; day 2: unchanged, fresh host"
    )
    pair.both(0, FIRST, restic_first=False)
    pair.both(1, UNCHANGED, restic_first=True)
    pair.backup_ours(2, UNCHANGED_FRESH, folder / "cache-fresh-host")
    pair.restore_both(2, RESTORE, full=True)

    print(f"\ndays 3 to {days + 2}: the 1 % change, then a backup; retention {RETENTION_DAYS} days")
    for number in range(1, days + 1):
        day = number + 2
        began = time.perf_counter()
        change(working.root / "data", spec, number)
        print(f"  day {day:2} change {time.perf_counter() - began:.1f} s")
        pair.both(day, CHANGED, restic_first=number % 2 == 0)
    record.backup(
        "restic", FORGET, days + 2, pair.restic_size, partial(pair.theirs.forget, pair.restic_work)
    )
    pair.restore_both(days + 2, RESTORE_LAST, full=True)

    tar = TarZstd(scratch, working)
    tar_work = folder / "tar"
    tar.prepare(tar_work)
    warm(working.root / "data")
    tar_measured = tar.backup(tar_work)
    baseline = tar.stored_bytes(tar_work)
    print(
        f"  tar | zstd -3 of the last day's set: {baseline / 1e6:,.1f} MB"
        f" in {tar_measured.seconds:.1f} s"
    )
    final_total = tree_size(working.root / "data")
    result = {
        "size": size,
        "dataset": {**asdict(spec), "files": dataset.files, "bytes": total},
        "final_dataset_bytes": final_total,
        "changed_days": days,
        "retention_days": RETENTION_DAYS,
        "rounds": rounds,
        "backups_kept": pair.ours.backups(pair.our_work),
        "tar_zstd_last_day_bytes": baseline,
        "tar_zstd_last_day_seconds": round(tar_measured.seconds, 3),
        "steps": [asdict(s) for s in record.steps],
        "commands": _commands(),
    }
    if not keep:
        remove_tree(folder)
    return result


class _nullplace:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> Path:
        self.path.mkdir(parents=True, exist_ok=True)
        return self.path

    def __exit__(self, *_: object) -> None:
        remove_tree(self.path)


def _commands() -> list[str]:
    return [
        "backupctl apply -f WORK/bench.yaml --now DAY   (schedule 24 h, retention 7 days;"
        " BACKUPCTL_CACHE_DIR=CACHE, a fresh empty folder for the fresh host)",
        "backupctl restore -f WORK/bench.yaml --backup latest --key KEYS/bench.pem --to TARGET",
        "restic -r WORK/repo backup --host bench --time DAY DATA",
        "restic -r WORK/repo forget --keep-within 7d --prune   (once, after the last day)",
        "restic -r WORK/repo restore latest --target TARGET",
        "tar -C SET -cf - data | zstd -3 -T1 -q -o WORK/data.tar.zst   (the last day's set)",
    ]


# -- figures and targets --------------------------------------------------------


def _step(steps: list[dict[str, Any]], tool: str, step: str) -> dict[str, Any] | None:
    """The step of the first round (the one that goes on for days)."""
    return next(
        (s for s in steps if s["tool"] == tool and s["step"] == step and s["round"] == 1), None
    )


def _tool_steps(steps: list[dict[str, Any]], tool: str, step: str) -> list[dict[str, Any]]:
    """The step in every round, by round number."""
    found = [s for s in steps if s["tool"] == tool and s["step"] == step]
    return sorted(found, key=lambda s: s["round"])


def summarize(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets: name, measured value, limit, met."""
    steps: list[dict[str, Any]] = result["steps"]
    total = result["dataset"]["bytes"]
    large = result["size"] == "large"
    found: list[dict[str, Any]] = []

    def ratio(name: str, step: str, limit: float) -> None:
        ours = _tool_steps(steps, "backupctl", step)
        theirs = _tool_steps(steps, "restic", step)
        if ours and theirs and not large:
            wall = [statistics.median(s["seconds"] for s in t) for t in (ours, theirs)]
            cpu = [statistics.median(s.get("cpu_seconds", 0) for s in t) for t in (ours, theirs)]
            value = wall[0] / wall[1]
            rounds = ", ".join(
                f"{a['seconds'] / b['seconds']:.2f}" for a, b in zip(ours, theirs, strict=True)
            )
            cpu_ratio = f"; CPU {cpu[0] / cpu[1]:.2f}x" if cpu[1] else ""
            found.append(
                {
                    "target": name,
                    "value": f"{value:.2f}x (medians {wall[0]:.2f} s / {wall[1]:.2f} s;"
                    f" each round {rounds}{cpu_ratio})",
                    "met": value <= limit,
                }
            )

    def added(name: str, step: dict[str, Any] | None, limit_percent: float) -> None:
        if step is not None:
            percent = step["added_bytes"] / total * 100
            found.append(
                {
                    "target": name,
                    "value": f"{percent:.3f} % ({step['added_bytes'] / 1e6:,.2f} MB)",
                    "met": percent <= limit_percent,
                }
            )

    ratio("first backup <= 0.6x restic", FIRST, 0.6)
    added("unchanged backup, same host: adds <= 0.1 %", _step(steps, "backupctl", UNCHANGED), 0.1)
    added(
        "unchanged backup, fresh host (empty cache): adds <= 0.1 %",
        _step(steps, "backupctl", UNCHANGED_FRESH),
        0.1,
    )
    ratio("unchanged backup with cache <= 0.5x restic's unchanged", UNCHANGED, 0.5)
    before_prune = [
        s
        for s in steps
        if s["tool"] == "backupctl"
        and s["step"] == CHANGED
        and s["day"] <= RETENTION_DAYS  # the first prune is on day 8
    ]
    if before_prune:
        added(
            f"1 % change adds <= 3 % (largest of days 3-{before_prune[-1]['day']},"
            " before any prune)",
            max(before_prune, key=lambda s: s["added_bytes"]),
            3.0,
        )
    last = [
        s for s in steps if s["tool"] == "backupctl" and s["step"] == CHANGED and s["round"] == 1
    ]
    if last and result["changed_days"] >= CHANGED_DAYS:
        stored = last[-1]["stored_bytes"] / result["tar_zstd_last_day_bytes"]
        forget = _step(steps, "restic", FORGET)
        theirs = (
            f"; restic after forget --prune {forget['stored_bytes'] / 1e6:,.1f} MB,"
            f" {forget['stored_bytes'] / result['tar_zstd_last_day_bytes']:.2f}x"
            if forget
            else ""
        )
        found.append(
            {
                "target": f"{result['changed_days']} daily backups, retention 7 days:"
                " stored <= 1.3x tar | zstd -3",
                "value": f"{stored:.2f}x ({last[-1]['stored_bytes'] / 1e6:,.1f} MB /"
                f" {result['tar_zstd_last_day_bytes'] / 1e6:,.1f} MB{theirs})",
                "met": stored <= 1.3,
            }
        )
    ratio("restore into a fresh file system <= 0.6x restic", RESTORE, 0.6)
    peaks = [s["peak_rss_kib"] for s in steps if s["tool"] == "backupctl"]
    if peaks:
        peak = max(peaks) / 1024
        where = "" if large else " (the target is on the 4 GB set; this set shown)"
        found.append(
            {
                "target": f"peak RSS of backup and restore < 200 MiB{where}",
                "value": f"{peak:.0f} MiB",
                "met": peak < 200,
            }
        )
    return found


def print_targets(targets: list[dict[str, Any]]) -> None:
    print("\ntargets (issue 14):")
    for t in targets:
        print(f"  {'PASS' if t['met'] else 'MISS'}  {t['target']}: {t['value']}")


def large_set_memory() -> dict[str, Any] | None:
    """The 4 GB set's peak RSS, from ``bench.run --size large``'s saved results."""
    saved = RESULTS_DIR / "large.json"
    if not saved.exists():
        return None
    medians = json.loads(saved.read_text())["summary"]["medians"]["backupctl"]
    backup, restore = medians["backup_peak_rss_kib"] / 1024, medians["restore_peak_rss_kib"] / 1024
    return {
        "target": "peak RSS < 200 MiB on the 4 GB set (`bench.run --size large`)",
        "value": f"backup {backup:.0f} MiB, restore {restore:.0f} MiB",
        "met": max(backup, restore) < 200,
    }


def _with_large(targets: list[dict[str, Any]], size: str) -> list[dict[str, Any]]:
    large = large_set_memory()
    return [*targets, large] if large is not None and size != "large" else targets


def report_only(size: str) -> int:
    saved = RESULTS_DIR / f"dedup-{size}.json"
    result = json.loads(saved.read_text())
    result["targets"] = _with_large(summarize(result), size)
    noop_file = RESULTS_DIR / "noop.json"
    if noop_file.exists() and size != "large":
        result["targets"].append(noop.target(json.loads(noop_file.read_text())))
    print_targets(result["targets"])
    write_result(saved.name, result)
    report.write(RESULTS_DIR, Path(__file__).parent / "RESULTS.md")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.dedup", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--size", choices=sorted(SPECS), default="small")
    parser.add_argument("--days", type=int, default=CHANGED_DAYS, help="changed days (default 28)")
    parser.add_argument(
        "--scratch",
        type=Path,
        default=Path(os.environ.get("BACKUPCTL_BENCH_DIR", "/var/tmp/backupctl-bench")),
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds of the timed first and unchanged backups"
    )
    parser.add_argument("--skip-noop", action="store_true", help="do not time the no-op plan")
    parser.add_argument("--keep", action="store_true", help="keep the repositories")
    parser.add_argument(
        "--no-write", action="store_true", help="print only; leave bench/results alone"
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="judge the saved results again and regenerate bench/RESULTS.md; run nothing",
    )
    args = parser.parse_args(argv)
    if args.report_only:
        return report_only(args.size)
    scratch: Path = args.scratch.resolve()
    scratch.mkdir(parents=True, exist_ok=True)
    missing = [tool for tool in ("tar", "zstd", "restic") if shutil.which(tool) is None]
    if not os.access(TIME, os.X_OK):
        missing.append(f"GNU time ({TIME})")
    if missing:
        print(f"missing: {', '.join(missing)} (Debian: apt-get install -y tar zstd time restic)")
        return 1
    machine = describe_machine(scratch)
    print_machine(machine)
    machine["speed before (zstd -3, 64 MB, 1 thread)"] = calibrate(scratch)
    result = run_days(args.size, scratch, args.days, args.rounds, keep=args.keep)
    machine["speed after (zstd -3, 64 MB, 1 thread)"] = calibrate(scratch)
    result["machine"] = machine
    result["targets"] = _with_large(summarize(result), args.size)
    if not args.no_write:  # before the no-op plan, which takes minutes the first time
        write_result(f"dedup-{args.size}.json", result)
    if not args.skip_noop and args.size != "large":
        noop_result = noop.run(
            scratch, Backupctl(scratch, Dataset(SPECS["smoke"], scratch, 0, 0, 0))
        )
        noop_result["machine"] = machine
        noop.print_result(noop_result)
        result["targets"].append(noop.target(noop_result))
        if not args.no_write:
            write_result("noop.json", noop_result)
    print_targets(result["targets"])
    if not args.no_write:
        write_result(f"dedup-{args.size}.json", result)
        report.write(RESULTS_DIR, Path(__file__).parent / "RESULTS.md")
        print(f"\nwrote {Path(__file__).parent / 'RESULTS.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
