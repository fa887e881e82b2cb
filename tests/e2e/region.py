"""A workspace for crash and concurrency tests: the quickstart plus a dump source
that a test can slow down, hold mid-read, and time."""

from __future__ import annotations

import itertools
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.conftest import REPO, Result
from tests.e2e.processes import Background, run, start

SLOW_DUMP = """\
#!/bin/sh
# A dump command a test can control through its environment:
#   SLOW_DUMP_LOG      append "start PID TIME" and "end PID TIME" lines to this file
#   SLOW_DUMP_SECONDS  take this long
#   SLOW_DUMP_MARKER   after half the output, create this file, then wait for the
#                      file SLOW_DUMP_GO (at most a minute: a kill -9 of backupctl
#                      leaves this process behind, as it would a real dump)
if [ -n "$SLOW_DUMP_LOG" ]; then echo "start $$ $(date +%s.%N)" >> "$SLOW_DUMP_LOG"; fi
echo "first half of the dump"
if [ -n "$SLOW_DUMP_SECONDS" ]; then sleep "$SLOW_DUMP_SECONDS"; fi
if [ -n "$SLOW_DUMP_MARKER" ]; then
    touch "$SLOW_DUMP_MARKER"
    i=0
    while [ ! -e "$SLOW_DUMP_GO" ] && [ $i -lt 3000 ]; do sleep 0.02; i=$((i+1)); done
fi
echo "second half of the dump"
if [ -n "$SLOW_DUMP_LOG" ]; then echo "end $$ $(date +%s.%N)" >> "$SLOW_DUMP_LOG"; fi
exit 0
"""

SLOW_SOURCE = """\
    - name: slow-dump
      command:
        backup: [./stamp/bin/slow-dump]
        timeoutSeconds: 120
"""


@dataclass(frozen=True)
class Region:
    """A workspace: examples/ with the slow dump as the last source, and its repository."""

    root: Path

    @classmethod
    def create(cls, root: Path) -> Region:
        shutil.copytree(REPO / "examples", root / "examples", symlinks=True)
        (root / ".backups").mkdir()
        script = root / "examples" / "stamp" / "bin" / "slow-dump"
        script.write_text(SLOW_DUMP)
        script.chmod(0o755)
        region = cls(root)
        region.config.write_text(region.config.read_text().rstrip("\n") + "\n" + SLOW_SOURCE)
        return region

    @property
    def config(self) -> Path:
        return self.root / "examples" / "quickstart.yaml"

    @property
    def repository(self) -> Path:
        return self.root / ".backups" / "quickstart"

    @property
    def key(self) -> Path:
        return self.root / "examples" / "keys" / "demo-backup.pem"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def run(self, *args: str | Path, env: dict[str, str] | None = None) -> Result:
        return run(self.root, *args, env=env)

    def apply(self, now: str, *args: str) -> Result:
        return self.run("apply", "-f", self.config, "--now", now, *args)

    def start(self, *args: str | Path, env: dict[str, str] | None = None) -> Background:
        return start(self.root, self.logs, *args, env=env)

    def start_apply(self, now: str, env: dict[str, str], *args: str) -> Background:
        return self.start("apply", "-f", self.config, "--now", now, *args, env=env)

    def listed(self) -> dict[str, str]:
        """Backup id -> status as `backups list --output json` shows them to a user."""
        result = self.run("backups", "list", "-f", self.config, "--output", "json")
        assert result.code == 0, result.text
        return {b["id"]: b["status"] for b in json.loads(result.out)["backups"]}

    def set_trigger(self, value: str) -> None:
        text = self.config.read_text()
        start = text.index("\n  trigger:")
        end = text.index("\n", start + 1)
        self.config.write_text(f"{text[:start]}\n  trigger: {json.dumps(value)}{text[end:]}")


def wait_for_file(path: Path, process: Background, timeout: float = 60) -> None:
    """Return once ``path`` exists; fail if ``process`` exits first."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.process.poll() is None, process.output()
        assert time.monotonic() < deadline, f"{path} never appeared:\n{process.output()}"
        time.sleep(0.01)


def dump_intervals(log: Path) -> list[tuple[float, float]]:
    """(start, end) of every slow-dump run recorded in ``log`` that finished."""
    starts: dict[str, float] = {}
    spans = []
    for line in log.read_text().splitlines():
        kind, pid, moment = line.split()
        if kind == "start":
            starts[pid] = float(moment)
        else:
            spans.append((starts.pop(pid), float(moment)))
    return sorted(spans)


def assert_never_overlapping(spans: list[tuple[float, float]]) -> None:
    for (_, end), (begin, _) in itertools.pairwise(spans):
        assert end <= begin, f"two backups read the source at once: {spans}"
