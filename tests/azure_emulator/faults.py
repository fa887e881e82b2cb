"""Fault injection: make chosen requests fail, stall or lose their connection.

Faults are set on the emulator object by tests (never over HTTP). Each one
matches requests by method, a substring of the path and/or a predicate, and
applies to the next ``times`` matching requests (``None``: every one).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RequestInfo:
    """A request as tests see it: method, decoded path after the account, query."""

    method: str
    path: str  # "/share/dir/file", decoded
    query: Mapping[str, str]

    @property
    def comp(self) -> str | None:
        return self.query.get("comp")

    @property
    def restype(self) -> str | None:
        return self.query.get("restype")


@dataclass(frozen=True)
class LoggedRequest(RequestInfo):
    """A request the emulator answered, with the status it answered."""

    status: int = 0


@dataclass
class Fault:
    """What to do to matching requests.

    ``status`` (503 or 500) answers with that error instead of running the
    operation. ``drop_after`` runs the operation, sends the response headers
    and that many body bytes, then closes the connection (0: close before any
    response). ``delay`` sleeps before handling. ``hits`` counts applications.
    """

    status: int | None = None
    drop_after: int | None = None
    delay: float = 0.0
    times: int | None = 1
    method: str | None = None
    path_contains: str | None = None
    predicate: Callable[[RequestInfo], bool] | None = None
    hits: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.status not in (None, 500, 503):
            raise ValueError("a fault's status is 500 (InternalError) or 503 (ServerBusy)")
        if self.times is not None and self.times < 1:
            raise ValueError("a fault applies at least once (times=None: always)")

    def matches(self, request: RequestInfo) -> bool:
        if self.method is not None and request.method != self.method:
            return False
        if self.path_contains is not None and self.path_contains not in request.path:
            return False
        return self.predicate is None or self.predicate(request)


class Faults:
    """The emulator's active faults; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: list[Fault] = []

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._active.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._active.clear()

    def take(self, request: RequestInfo) -> Fault | None:
        """The first fault matching ``request``, counting one use of it."""
        with self._lock:
            for fault in self._active:
                if fault.matches(request):
                    fault.hits += 1
                    if fault.times is not None and fault.hits >= fault.times:
                        self._active.remove(fault)
                    return fault
        return None
