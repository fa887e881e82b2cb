"""The daemon under test: ``backupctl daemon`` serving a region's status page."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from tests.e2e.processes import Background
from tests.e2e.region import Region


@dataclass(frozen=True)
class Served:
    """A daemon reconciling a region, and the base URL its pages are served at."""

    region: Region
    daemon: Background
    base: str

    def events(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.daemon.err.read_text().splitlines() if line]

    def wait_for_tick(self, count: int = 1, timeout: float = 60) -> None:
        """Return once ``count`` reconcile ticks are over (the daemon went to sleep)."""
        deadline = time.monotonic() + timeout
        while sum(e["event"] == "daemon.sleep" for e in self.events()) < count:
            assert self.daemon.process.poll() is None, self.daemon.output()
            assert time.monotonic() < deadline, f"no tick ended:\n{self.daemon.output()}"
            time.sleep(0.05)


Serve = Callable[..., Served]


def listening_address(daemon: Background) -> str:
    for line in daemon.err.read_text().splitlines():
        event = json.loads(line)
        if event["event"] == "daemon.listening":
            return str(event["message"]).rsplit(" ", 1)[1]
    raise AssertionError(daemon.output())


@contextmanager
def serving(
    region: Region,
    *args: str,
    listen: str = "127.0.0.1:0",
    env: dict[str, str] | None = None,
) -> Iterator[Served]:
    """``backupctl daemon`` on ``region`` (a tick a minute: the test makes the
    changes it wants to see); killed on the way out if still running."""
    daemon = region.start(
        "daemon", "-f", region.config, "--listen", listen, "--log-format", "json",
        "--interval", "60", *args, env=env,
    )  # fmt: skip
    try:
        daemon.wait_for('"event": "daemon.started"')
        host, _, port = listening_address(daemon).rpartition(":")
        # A daemon listening on every address is reached on the loopback one;
        # the token rule follows the listen address, not the caller's.
        host = "127.0.0.1" if host in ("0.0.0.0", "[::]") else host
        yield Served(region, daemon, f"http://{host}:{port}")
    finally:
        if daemon.process.poll() is None:
            daemon.kill9()
