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

    def finish(self, timeout: float = 60) -> Result:
        code = self.process.wait(timeout=timeout)
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
