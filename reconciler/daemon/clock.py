"""Time for the daemon: the real clock, or a virtual one for tests.

The loop never calls ``time.sleep``: it waits on its stop event with a
deadline, so a stop request ends the wait at once, and a virtual clock can
jump straight to the deadline."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from reconciler.timeutil import now_utc, utc


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, UTC, whole seconds (as backups record it)."""
        ...

    def sleep_until(self, stop: threading.Event, deadline: datetime) -> bool:
        """Wait until ``deadline`` or until ``stop`` is set; return True when stopped."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return now_utc()

    def sleep_until(self, stop: threading.Event, deadline: datetime) -> bool:
        # A wall-clock deadline turned into a duration once: Event.wait measures
        # it on the monotonic clock, so a clock step cannot stretch the sleep.
        seconds = (utc(deadline) - datetime.now(UTC)).total_seconds()
        return stop.wait(max(seconds, 0.0))


class VirtualClock:
    """A clock that jumps to each deadline at once.

    ``on_wake(now)`` runs after every jump (tests use it to edit the
    configuration at a given virtual time, or to stop the loop)."""

    def __init__(self, start: datetime, on_wake: Callable[[datetime], None] | None = None) -> None:
        self._now = utc(start)
        self._on_wake = on_wake
        self.sleeps: list[datetime] = []
        """Every deadline slept until, in order."""

    def now(self) -> datetime:
        return self._now.replace(microsecond=0)

    def sleep_until(self, stop: threading.Event, deadline: datetime) -> bool:
        if stop.is_set():
            return True
        self.sleeps.append(deadline)
        self._now = max(self._now, utc(deadline))
        if self._on_wake is not None:
            self._on_wake(self.now())
        return stop.is_set()
