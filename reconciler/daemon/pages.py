"""The status page's routes: a request's path to a page or an API document.

Built on the request's own thread from the daemon's state (a snapshot copied
under a lock held only for the copy) and the repositories' catalogs, so a page
never waits for the loop and the loop never waits for a page. What was built
is kept for ``CACHE_SECONDS``: a page reloaded by several people, or every few
seconds, reads each catalog once, not once a request.

    /                                         the overview
    /configurations/NAME[?page=N]             a configuration and a page of its backups
    /configurations/NAME/backups/ID           a backup and its sources
    /api/v1/status                            every configuration, as JSON
    /api/v1/configurations/NAME[?page=N]      a configuration, as JSON
    /api/v1/configurations/NAME/backups/ID    a backup, as JSON
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, TypeVar, cast
from urllib.parse import parse_qs, unquote

from reconciler.errors import BackupctlError
from reconciler.spec.model import BackupConfiguration
from reconciler.usecases.status import Activity, build_status, find_backup
from reconciler.usecases.status_json import (
    backup_document,
    configuration_document,
    status_document,
)
from reconciler.usecases.status_model import API_VERSION, BackupSummary, StatusReport
from reconciler.web import (
    render_backup,
    render_configuration,
    render_overview,
    render_problem,
)

CACHE_SECONDS = 2.0
_T = TypeVar("_T")
HTML = "text/html; charset=utf-8"
JSON = "application/json"


class StateSnapshot(Protocol):
    """What ``daemon.state.DaemonState.snapshot`` returns."""

    @property
    def configurations(self) -> Sequence[BackupConfiguration]: ...

    @property
    def activity(self) -> Mapping[str, Activity]: ...


@dataclass(frozen=True)
class Reply:
    code: int
    content_type: str
    body: bytes


class _NotFound(Exception):
    pass


class _BadRequest(Exception):
    pass


class StatusPages:
    """Answers the page and API routes; safe to call from many threads at once."""

    def __init__(
        self,
        snapshot: Callable[[], StateSnapshot],
        now: Callable[[], datetime],
        monotonic: Callable[[], float] = time.monotonic,
        cache_seconds: float = CACHE_SECONDS,
    ) -> None:
        self._snapshot = snapshot
        self._now = now
        self._monotonic = monotonic
        self._cache_seconds = cache_seconds
        self._cache: dict[tuple[str, ...], tuple[float, object]] = {}
        self._lock = threading.Lock()

    def answer(self, path: str, query: str) -> Reply:
        """The reply to GET ``path?query`` (404 when no route matches it)."""
        api = path.startswith("/api/v1/")
        parts = [unquote(p) for p in path.split("/")[1:]]
        route = parts[2:] if api else parts
        try:
            reply = self._route(route, query, api)
            if reply is None:
                raise _NotFound(f"nothing is at {path}: start at /")
        except _NotFound as exc:
            return _problem(404, "Not found", str(exc), api, self._now())
        except _BadRequest as exc:
            return _problem(400, "Bad request", str(exc), api, self._now())
        except BackupctlError as exc:
            return _problem(503, "Cannot read the repository", str(exc), api, self._now())
        return reply

    # ------------------------------------------------------------- routing

    def _route(self, route: list[str], query: str, api: bool) -> Reply | None:
        if not api and route == [""]:
            return _html(render_overview(self._overview()))
        if api and route == ["status"]:
            return _json(status_document(self._overview()))
        if len(route) >= 2 and route[0] == "configurations" and route[1]:
            name = route[1]
            if len(route) == 2:
                report = self._configuration(name, _page_number(query))
                config = report.configurations[0]
                if api:
                    return _json(configuration_document(config, report.generated_at))
                return _html(render_configuration(config, report.generated_at))
            if len(route) == 4 and route[2] == "backups" and route[3]:
                backup, now = self._backup(name, route[3])
                if api:
                    return _json(backup_document(name, backup, now))
                return _html(render_backup(name, backup, now))
        return None

    # ------------------------------------------------------------- building

    def _overview(self) -> StatusReport:
        def build() -> StatusReport:
            state = self._snapshot()
            return build_status(state.configurations, self._now(), state.activity)

        return self._cached(("overview",), build)

    def _configuration(self, name: str, page: int) -> StatusReport:
        def build() -> StatusReport:
            state = self._snapshot()
            self._find(state, name)
            report = build_status(
                state.configurations, self._now(), state.activity, page=page, only=name
            )
            backups = report.configurations[0].backups
            if page > backups.pages:
                raise _NotFound(
                    f"{name} has {backups.total} backups on {backups.pages} pages: no page {page}"
                )
            return report

        return self._cached(("configuration", name, str(page)), build)

    def _backup(self, name: str, backup_id: str) -> tuple[BackupSummary, datetime]:
        def build() -> tuple[BackupSummary, datetime]:
            config = self._find(self._snapshot(), name)
            backup = find_backup(config, backup_id)
            if backup is None:
                raise _NotFound(f"{name} has no backup {backup_id}")
            return backup, self._now()

        return self._cached(("backup", name, backup_id), build)

    @staticmethod
    def _find(state: StateSnapshot, name: str) -> BackupConfiguration:
        for config in state.configurations:
            if config.name == name:
                return config
        raise _NotFound(f"no configuration is named {name}")

    def _cached(self, key: tuple[str, ...], build: Callable[[], _T]) -> _T:
        now = self._monotonic()
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and now - hit[0] < self._cache_seconds:
                return cast(_T, hit[1])
        value = build()  # outside the lock: one slow repository holds up no other page
        with self._lock:
            self._cache = {k: v for k, v in self._cache.items() if now - v[0] < self._cache_seconds}
            self._cache[key] = (now, value)
        return value


def _page_number(query: str) -> int:
    values = parse_qs(query).get("page")
    if not values:
        return 1
    text = values[-1]
    if not text.isascii() or not text.isdigit() or int(text) < 1:
        raise _BadRequest(f"page must be a whole number from 1, not {text!r}")
    return int(text)


def _html(page: str) -> Reply:
    return Reply(200, HTML, page.encode())


def _json(document: object) -> Reply:
    return Reply(200, JSON, (json.dumps(document, indent=2) + "\n").encode())


def _problem(code: int, title: str, message: str, api: bool, now: datetime) -> Reply:
    if api:
        document = {"apiVersion": API_VERSION, "kind": "Error", "code": code, "message": message}
        return Reply(code, JSON, (json.dumps(document) + "\n").encode())
    return Reply(code, HTML, render_problem(title, message, now).encode())
