"""The browser and the daemon the status page tests drive."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from selenium.common.exceptions import WebDriverException

from tests.browser.chromium import INSTALL_HINT, Browser, executables, start_driver
from tests.e2e.processes import Background
from tests.e2e.region import Region
from tests.servers.fixtures import in_ci


@pytest.fixture(scope="session")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    """One headless Chromium for the session.

    Outside CI, skips when Chromium is not installed; in CI (env CI=true) a
    browser that is missing or cannot start fails the tests, never skips them."""
    found = executables()
    if found is None:
        if not in_ci():
            pytest.skip(f"chromium or chromedriver is not installed ({INSTALL_HINT})")
        pytest.fail(f"chromium or chromedriver is not installed ({INSTALL_HINT})", pytrace=False)
    try:
        driver = start_driver(*found, tmp_path_factory.mktemp("chromium-profile"))
    except WebDriverException as exc:
        pytest.fail(f"headless Chromium did not start: {exc.msg}", pytrace=False)
    yield Browser(driver)
    driver.quit()


@pytest.fixture
def browser(chromium: Browser) -> Browser:
    chromium.reset()
    return chromium


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


@pytest.fixture
def serve() -> Iterator[Serve]:
    """Start ``backupctl daemon`` on a region; kill what is left at the end."""
    daemons: list[Background] = []

    def _serve(
        region: Region,
        *args: str,
        listen: str = "127.0.0.1:0",
        env: dict[str, str] | None = None,
    ) -> Served:
        daemon = region.start(
            "daemon", "-f", region.config, "--listen", listen, "--log-format", "json",
            "--interval", "60", *args, env=env,
        )  # fmt: skip
        daemons.append(daemon)
        daemon.wait_for('"event": "daemon.started"')
        host, _, port = listening_address(daemon).rpartition(":")
        # A daemon on every address is reached on the loopback one, still
        # counting as "off loopback" for the token: that is the listen address.
        host = "127.0.0.1" if host in ("0.0.0.0", "[::]") else host
        return Served(region, daemon, f"http://{host}:{port}")

    yield _serve
    for daemon in daemons:
        if daemon.process.poll() is None:
            daemon.kill9()


@pytest.fixture
def region(tmp_path: Path) -> Region:
    return Region.create(tmp_path / "ws")
