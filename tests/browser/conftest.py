"""The browser and the daemon the status page tests drive."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from selenium.common.exceptions import WebDriverException

from tests.browser.chromium import INSTALL_HINT, Browser, executables, start_driver
from tests.browser.daemon import Serve, Served, serving
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


@pytest.fixture
def serve() -> Iterator[Serve]:
    """Start daemons on regions with ``serving``; kill what is left at the end."""
    with ExitStack() as stack:

        def _serve(
            region: Region,
            *args: str,
            listen: str = "127.0.0.1:0",
            env: dict[str, str] | None = None,
        ) -> Served:
            return stack.enter_context(serving(region, *args, listen=listen, env=env))

        yield _serve


@pytest.fixture
def region(tmp_path: Path) -> Region:
    return Region.create(tmp_path / "ws")
