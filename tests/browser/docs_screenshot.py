"""Remake docs/status-page.png, the README's picture of the status page.

    .venv/bin/python -m tests.browser.docs_screenshot

The same as the tests do (a daemon serving repositories the real CLI made,
headless Chromium), with an ordinary failure instead of the tests' hostile
stderr, at a wide laptop's width."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from tests.browser.chromium import Browser, executables, start_driver
from tests.browser.daemon import serving
from tests.browser.scene import add_failing_configuration, make_history
from tests.e2e.region import Region

DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "status-page.png"
WIDE = {"width": 1440, "height": 900, "deviceScaleFactor": 1, "mobile": False}


def main() -> int:
    found = executables()
    if found is None:
        print("needs chromium and chromedriver (apt-get install chromium chromium-driver)")
        return 1
    with tempfile.TemporaryDirectory(prefix="status-page-") as scratch:
        root = Path(scratch)
        region = Region.create(root / "ws")
        add_failing_configuration(
            region, "cmdb export: cannot reach cmdb.internal:443: connection refused"
        )
        env = {"BACKUPCTL_CACHE_DIR": str(root / "cache")}
        make_history(region, env)
        driver = start_driver(*found, root / "profile")
        try:
            browser = Browser(driver)
            browser.reset()
            browser.viewport(WIDE)
            with serving(region, env=env) as served:
                served.wait_for_tick()
                browser.open(f"{served.base}/")
                shutil.copyfile(browser.screenshot("docs-overview"), DOCS_SCREENSHOT)
        finally:
            driver.quit()
    print(f"wrote {DOCS_SCREENSHOT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
