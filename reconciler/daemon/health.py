"""Liveness of the loop, for ``/healthz`` (served by ``daemon.server``).

The loop is healthy while it runs and shows progress: a finished tick, a
source backed up, or any write to the storage (a long upload writes
continuously). When none of these happened for ``stalled_after`` seconds (three
intervals), ``/healthz`` answers 503, so that an orchestrator restarts a daemon
stuck on a hung share. Liveness uses the real monotonic clock, whatever clock
the loop schedules by."""

from __future__ import annotations

import time
from collections.abc import Callable


class Health:
    def __init__(self, stalled_after: float, monotonic: Callable[[], float] = time.monotonic):
        self._stalled_after = stalled_after
        self._monotonic = monotonic
        self._last_progress = monotonic()
        self._running = False
        self._ticks = 0

    def started(self) -> None:
        self._running = True
        self.beat()

    def stopped(self) -> None:
        self._running = False

    def beat(self) -> None:
        """Record progress (called from the loop thread; a float store is atomic)."""
        self._last_progress = self._monotonic()

    def tick_finished(self) -> None:
        self._ticks += 1
        self.beat()

    def report(self) -> tuple[bool, dict[str, object]]:
        """Whether the loop is healthy, and why, for the /healthz body."""
        idle = self._monotonic() - self._last_progress
        healthy = self._running and idle <= self._stalled_after
        status = "ok" if healthy else ("stopped" if not self._running else "stalled")
        return healthy, {
            "status": status,
            "ticks": self._ticks,
            "secondsSinceProgress": round(idle, 1),
            "stalledAfterSeconds": self._stalled_after,
        }
