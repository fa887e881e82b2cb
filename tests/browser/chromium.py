"""Headless Debian Chromium driven by Selenium, as the status page tests use it.

One browser serves a whole test session (starting one costs about a second);
each test gets it back in a known state: the laptop viewport, no extra
headers, an empty request log."""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

INSTALL_HINT = "apt-get install chromium chromium-driver"

# What a person looks at the screenshots on: a laptop, and a phone (CSS pixels).
LAPTOP = {"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": False}
PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True}

# Nothing in the background: no update checks, no sync, no first-run pages,
# so that every request the performance log shows is one the page made.
ARGUMENTS = (
    "--headless=new",
    "--no-sandbox",  # root in CI, and no user namespaces in containers
    "--disable-gpu",
    "--disable-dev-shm-usage",  # a container's small /dev/shm crashes tabs
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-sync",
    "--no-default-browser-check",
    "--no-first-run",
    "--no-pings",
    "--metrics-recording-only",
    "--window-size=1280,800",
)

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


def executables() -> tuple[str, str] | None:
    """(chromium, chromedriver) when both are installed, else None."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def start_driver(browser: str, driver: str, profile: Path) -> WebDriver:
    """A headless Chromium with its own profile folder, logging every request.

    Raises WebDriverException when it cannot start."""
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in (*ARGUMENTS, f"--user-data-dir={profile}"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(driver))


@dataclass(frozen=True)
class Request:
    url: str
    status: int | None
    """The response's HTTP status, None when none came (blocked or failed)."""
    kind: str
    """Document, Stylesheet, Image..."""
    headers: dict[str, str]
    """The response's headers, names in lower case ({} when none came)."""


@dataclass(frozen=True)
class Loaded:
    """A page load: the document's status and headers, and every request it made."""

    status: int | None
    requests: tuple[Request, ...]
    headers: dict[str, str]


class Browser:
    """The session's Chromium, with what the tests ask of it."""

    def __init__(self, driver: WebDriver) -> None:
        self.driver = driver

    def reset(self) -> None:
        """The laptop viewport, no extra headers, no request logged yet."""
        self.driver.execute_cdp_cmd("Network.enable", {})
        self.driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {}})
        self.viewport(LAPTOP)
        self.driver.get("about:blank")
        self.requests()
        self.console()

    def viewport(self, metrics: dict[str, Any]) -> None:
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)

    def send_header(self, name: str, value: str) -> None:
        """Send ``name: value`` with every request from now on (as a proxy would add it)."""
        self.driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {name: value}})

    def open(self, url: str) -> Loaded:
        """Load ``url``; return its status and every request the load made."""
        self.requests()
        self.driver.get(url)
        requests = self.requests()
        documents = [r for r in requests if r.kind == "Document"]
        assert documents, f"no document was loaded for {url}"
        return Loaded(documents[-1].status, tuple(requests), documents[-1].headers)

    def requests(self) -> list[Request]:
        """Every request the pages made since the last call, with its status."""
        sent: dict[str, tuple[str, str]] = {}
        responses: dict[str, tuple[int, dict[str, str]]] = {}
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            params = message.get("params", {})
            if message["method"] == "Network.requestWillBeSent":
                sent[params["requestId"]] = (params["request"]["url"], params.get("type", ""))
            elif message["method"] == "Network.responseReceived":
                response = params["response"]
                headers = {k.lower(): v for k, v in response.get("headers", {}).items()}
                responses[params["requestId"]] = (response["status"], headers)
        loaded = []
        for request_id, (url, kind) in sent.items():
            status, headers = responses.get(request_id, (None, {}))
            loaded.append(Request(url, status, kind, headers))
        return loaded

    def console(self) -> list[str]:
        """What the pages wrote on the console since the last call (CSP reports land here)."""
        return [str(entry["message"]) for entry in self.driver.get_log("browser")]

    def find(self, css: str) -> WebElement:
        """The first element ``css`` selects; fails naming the page when there is none."""
        found = self.find_all(css)
        assert found, f"no {css} on {self.driver.current_url}"
        return found[0]

    def find_all(self, css: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def screenshot(self, name: str) -> Path:
        """Save the whole page (not just the viewport) as test-artifacts/screenshots/NAME.png."""
        metrics = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
        size = metrics["cssContentSize"]
        shot = self.driver.execute_cdp_cmd(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {
                    "x": 0,
                    "y": 0,
                    "width": size["width"],
                    "height": size["height"],
                    "scale": 1,
                },
            },
        )
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        path.write_bytes(base64.b64decode(shot["data"]))
        return path


def foreign(requests: Iterable[Request], origin: str) -> list[str]:
    """The URLs among ``requests`` that went anywhere but ``origin`` (data: URLs go nowhere)."""
    host = urlsplit(origin).netloc
    places = [(r.url, urlsplit(r.url)) for r in requests]
    return [url for url, parts in places if parts.scheme != "data" and parts.netloc != host]
