"""The three ways of backing up and restoring that the benchmark compares.

Each tool runs as fresh child processes; a measurement is the wall time from
starting the first to the exit of the last, and the peak resident memory of
each as GNU time reports it (for a pipeline, the sum over its processes, since
they run at the same time).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.dataset import Dataset

NOW = "2026-01-02T00:00:00Z"
"""``--now`` of every benchmark backup (well after the data set's mtimes)."""


@dataclass(frozen=True)
class Measured:
    seconds: float
    peak_rss_kib: int
    cpu_seconds: float = 0.0
    """User and system time of the processes (and the children they waited for)."""


class ToolFailed(Exception):
    pass


TIME = "/usr/bin/time"
"""GNU time: reports a child's peak RSS without counting the launcher's memory.

(``wait4`` in this process would not do: the child starts as a copy of this
Python process, and the kernel keeps that copy's size as its peak across exec.)"""


def run_measured(
    commands: list[list[str]],
    *,
    cwd: Path,
    env: dict[str, str],
    log: Path,
    output: Path | None = None,
) -> Measured:
    """Run ``commands`` as a pipeline (stdout of one into stdin of the next).

    The last command's stdout goes to ``output`` (or the log), every stderr to
    ``log``. Raises ToolFailed naming the log when a command fails."""
    log.parent.mkdir(parents=True, exist_ok=True)
    rss_files = [log.with_name(f"{log.stem}.rss{index}") for index in range(len(commands))]
    with log.open("ab") as log_file:
        log_file.write(f"$ {' | '.join(' '.join(c) for c in commands)}\n".encode())
        log_file.flush()
        out_file = output.open("wb") if output is not None else None
        try:
            start = time.perf_counter()
            processes: list[subprocess.Popen[bytes]] = []
            previous = None
            for index, argv in enumerate(commands):
                last = index == len(commands) - 1
                stdout = (out_file or log_file) if last else subprocess.PIPE
                proc = subprocess.Popen(
                    [TIME, "-f", "%M %U %S", "-o", str(rss_files[index]), *argv],
                    cwd=cwd,
                    env=env,
                    stdin=previous if previous is not None else subprocess.DEVNULL,
                    stdout=stdout,
                    stderr=log_file,
                )
                if previous is not None:
                    previous.close()
                previous = proc.stdout
                processes.append(proc)
            failures = [
                f"{argv[0]} exited {code}"
                for argv, code in zip(commands, [p.wait() for p in processes], strict=True)
                if code != 0
            ]
            seconds = time.perf_counter() - start
        finally:
            if out_file is not None:
                out_file.close()
    if failures:
        raise ToolFailed(f"{'; '.join(failures)}; see {log}")
    # GNU time writes a note first when the command was killed by a signal.
    reports = [f.read_text().splitlines()[-1].split() for f in rss_files]
    rss = sum(int(r[0]) for r in reports)
    cpu = sum(float(r[1]) + float(r[2]) for r in reports)
    return Measured(seconds, rss, round(cpu, 2))


def tree_size(path: Path) -> int:
    """Bytes in the regular files under ``path`` (or of ``path`` itself)."""
    if path.is_file():
        return path.stat().st_size
    total = 0
    for folder, _dirs, files in os.walk(path):
        for name in files:
            total += os.lstat(os.path.join(folder, name)).st_size
    return total


class Tool:
    """One contender; ``work`` is a fresh folder per round."""

    name = ""

    def __init__(self, scratch: Path, dataset: Dataset) -> None:
        self.scratch = scratch
        self.dataset = dataset

    def prepare(self, work: Path) -> None:
        """Untimed set-up before the backup (an empty repository)."""

    def backup(self, work: Path) -> Measured:
        raise NotImplementedError

    def restore(self, work: Path, target: Path) -> Measured:
        raise NotImplementedError

    def stored_bytes(self, work: Path) -> int:
        raise NotImplementedError

    def restored_root(self, target: Path) -> Path:
        """Where the data set's ``data`` folder ends up under ``target``."""
        return target / "data"

    def commands(self) -> list[str]:
        """The commands run, for the report (placeholders in capitals)."""
        raise NotImplementedError


class Backupctl(Tool):
    name = "backupctl"

    def __init__(self, scratch: Path, dataset: Dataset) -> None:
        super().__init__(scratch, dataset)
        self.executable = str(Path(sys.executable).with_name("backupctl"))
        self.keys = scratch / "keys"
        self.env = dict(os.environ)
        # A pip-installed package runs from compiled bytecode; a sandbox setting
        # that disables bytecode caches would add recompiling every module to
        # each start, which no real installation pays.
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)
        self.env.pop("BACKUPCTL_FAILPOINTS", None)
        # The file cache of a run's repository goes beside the run, not into ~/.cache.
        self.env.setdefault("BACKUPCTL_CACHE_DIR", str(scratch / "cache"))

    def setup(self) -> None:
        """Make the key pair once, and compile the package (untimed)."""
        if not (self.keys / "bench.pem").exists():
            self.keys.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                [
                    self.executable,
                    "keys",
                    "create",
                    "--cert",
                    str(self.keys / "bench.cer"),
                    "--key",
                    str(self.keys / "bench.pem"),
                ],
                check=True,
                capture_output=True,
                env=self.env,
            )
        subprocess.run(
            [
                sys.executable,
                "-m",
                "compileall",
                "-q",
                str(Path(__file__).parents[1] / "reconciler"),
            ],
            check=True,
            env=self.env,
        )

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
            "  sources:\n"
            "    - name: data\n"
            f"      files: {{path: {self.dataset.root / 'data'}}}\n"
        )
        return path

    def prepare(self, work: Path) -> None:
        (work / "storage").mkdir(parents=True)
        self.config(work)

    def backup(self, work: Path) -> Measured:
        argv = [self.executable, "apply", "-f", str(work / "bench.yaml"), "--now", NOW]
        return run_measured([argv], cwd=work, env=self.env, log=work / "backup.log")

    def restore(self, work: Path, target: Path) -> Measured:
        argv = [
            self.executable,
            "restore",
            "-f",
            str(work / "bench.yaml"),
            "--backup",
            "latest",
            "--key",
            str(self.keys / "bench.pem"),
            "--to",
            str(target),
        ]
        return run_measured([argv], cwd=work, env=self.env, log=work / "restore.log")

    def stored_bytes(self, work: Path) -> int:
        return tree_size(work / "storage")

    def commands(self) -> list[str]:
        return [
            "backupctl keys create --cert KEYS/bench.cer --key KEYS/bench.pem   (once, untimed)",
            f"backupctl apply -f WORK/bench.yaml --now {NOW}",
            "backupctl restore -f WORK/bench.yaml --backup latest --key KEYS/bench.pem --to TARGET",
        ]


class Restic(Tool):
    name = "restic"

    def __init__(self, scratch: Path, dataset: Dataset) -> None:
        super().__init__(scratch, dataset)
        self.executable = shutil.which("restic") or "restic"
        self.env = dict(os.environ, RESTIC_PASSWORD="backupctl-bench")

    def _env(self, work: Path) -> dict[str, str]:
        return dict(self.env, RESTIC_CACHE_DIR=str(work / "cache"))

    def prepare(self, work: Path) -> None:
        work.mkdir(parents=True, exist_ok=True)
        run_measured(
            [[self.executable, "-r", str(work / "repo"), "init"]],
            cwd=work,
            env=self._env(work),
            log=work / "init.log",
        )

    def backup(self, work: Path) -> Measured:
        argv = [
            self.executable,
            "-r",
            str(work / "repo"),
            "backup",
            "--host",
            "bench",
            str(self.dataset.root / "data"),
        ]
        return run_measured([argv], cwd=work, env=self._env(work), log=work / "backup.log")

    def restore(self, work: Path, target: Path) -> Measured:
        argv = [self.executable, "-r", str(work / "repo"), "restore", "latest", "--target"]
        return run_measured(
            [[*argv, str(target)]], cwd=work, env=self._env(work), log=work / "restore.log"
        )

    def stored_bytes(self, work: Path) -> int:
        return tree_size(work / "repo")

    def restored_root(self, target: Path) -> Path:
        # restic stores absolute paths and restores them below the target.
        return target / str(self.dataset.root / "data").lstrip("/")

    def commands(self) -> list[str]:
        return [
            "restic -r WORK/repo init   (untimed; RESTIC_PASSWORD set, default compression auto)",
            "restic -r WORK/repo backup --host bench DATA",
            "restic -r WORK/repo restore latest --target TARGET",
        ]


class TarZstd(Tool):
    name = "tar|zstd"

    def prepare(self, work: Path) -> None:
        work.mkdir(parents=True, exist_ok=True)

    def backup(self, work: Path) -> Measured:
        return run_measured(
            [
                ["tar", "-C", str(self.dataset.root), "-cf", "-", "data"],
                ["zstd", "-3", "-T1", "-q", "-o", str(work / "data.tar.zst")],
            ],
            cwd=work,
            env=dict(os.environ),
            log=work / "backup.log",
        )

    def restore(self, work: Path, target: Path) -> Measured:
        target.mkdir(parents=True)
        return run_measured(
            [
                ["zstd", "-d", "-q", "-c", str(work / "data.tar.zst")],
                ["tar", "-C", str(target), "-xf", "-"],
            ],
            cwd=work,
            env=dict(os.environ),
            log=work / "restore.log",
        )

    def stored_bytes(self, work: Path) -> int:
        return tree_size(work / "data.tar.zst")

    def commands(self) -> list[str]:
        return [
            "tar -C DATASET -cf - data | zstd -3 -T1 -q -o WORK/data.tar.zst",
            "zstd -d -q -c WORK/data.tar.zst | tar -C TARGET -xf -",
        ]
