"""Remake docs/status-page.png and docs/status-page-phone.png, the README's
pictures of the status page's overview on a laptop and on a phone.

    .venv/bin/python -m tests.browser.docs_screenshot

The same as the tests do (a daemon serving repositories the real CLI made,
headless Chromium), with an ordinary failure instead of the tests' hostile
stderr, at a wide laptop's width and at a phone's."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from tests.browser.chromium import PHONE, Browser, executables, start_driver
from tests.browser.daemon import serving
from tests.browser.scene import add_failing_configuration, make_history
from tests.e2e.region import Region

DOCS = Path(__file__).resolve().parents[2] / "docs"
DOCS_SCREENSHOT = DOCS / "status-page.png"
DOCS_PHONE_SCREENSHOT = DOCS / "status-page-phone.png"
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
                browser.viewport(PHONE)
                browser.open(f"{served.base}/")
                shutil.copyfile(browser.screenshot("docs-overview-phone"), DOCS_PHONE_SCREENSHOT)
        finally:
            driver.quit()
    print(f"wrote {DOCS_SCREENSHOT} and {DOCS_PHONE_SCREENSHOT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
