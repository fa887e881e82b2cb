"""Running ``backupctl`` in the background: wait for a line it prints, kill it, reap it."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.conftest import BACKUPCTL, Result


@dataclass
class Background:
    """A ``backupctl`` process whose stdout and stderr go to files we can poll."""

    process: subprocess.Popen[bytes]
    out: Path
    err: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.out.read_text() + self.err.read_text()

    def wait_for(self, text: str, timeout: float = 60, stream: str = "err") -> None:
        """Return once ``text`` appeared in its stderr (or stdout); fail if it exits first."""
        path = self.err if stream == "err" else self.out
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in path.read_text():
                return
            if self.process.poll() is not None and text not in path.read_text():
                raise AssertionError(
                    f"backupctl exited {self.process.returncode} before printing {text!r}:\n"
                    + self.output()
                )
            time.sleep(0.01)
        raise AssertionError(f"backupctl did not print {text!r} in {timeout}s:\n{self.output()}")

    def kill9(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def signal(self, number: int) -> None:
        os.kill(self.pid, number)

    def resume(self, timeout: float = 60) -> None:
        """Continue a process that stopped itself at a ``stop`` failpoint.

        The failpoint prints its line, then stops the process: a SIGCONT sent
        between the two (a loaded machine makes that likely) would be lost and
        the process would stay stopped. So wait for the stop first."""
        deadline = time.monotonic() + timeout
        while _state(self.pid) != "T":
            if self.process.poll() is not None:
                raise AssertionError(f"backupctl exited before it stopped:\n{self.output()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"backupctl did not stop in {timeout}s:\n{self.output()}")
            time.sleep(0.01)
        os.kill(self.pid, signal.SIGCONT)

    def finish(self, timeout: float = 60) -> Result:
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            # Reap it here: a process left running would fail a later test
            # (an unraisable ResourceWarning) instead of this one.
            self.process.kill()
            self.process.wait(timeout=10)
            raise
        return Result(code, self.out.read_text(), self.err.read_text())


def start(
    cwd: Path,
    logs: Path,
    *args: str | Path,
    env: dict[str, str] | None = None,
) -> Background:
    """Start ``backupctl ARGS`` in ``cwd``; its output goes to files under ``logs``."""
    logs.mkdir(parents=True, exist_ok=True)
    count = len(list(logs.glob("*.out")))
    out, err = logs / f"{count}.out", logs / f"{count}.err"
    with out.open("wb") as out_file, err.open("wb") as err_file:
        process = subprocess.Popen(
            [BACKUPCTL, *map(str, args)],
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=out_file,
            stderr=err_file,
        )
    return Background(process, out, err)


def run(cwd: Path, *args: str | Path, env: dict[str, str] | None = None) -> Result:
    proc = subprocess.run(
        [BACKUPCTL, *map(str, args)],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def _state(pid: int) -> str:
    """The process state letter from /proc (``T`` when stopped)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0]
