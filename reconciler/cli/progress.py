"""Progress of long transfers (backing up or restoring a source).

On a terminal: a bar with the bytes done, the throughput and the time left,
shown once a transfer has taken more than a second and erased when it ends,
so that the one line printed per source stays the record of what happened.
Elsewhere (CI logs, systemd, a pipe): a line every ten seconds instead.

Byte counts arrive from the pipeline, possibly from another thread; every
method is thread-safe. The counts are of stored (encrypted) bytes: a restore
knows exactly how many it will read, a backup guesses from the size of the
source's previous backup.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

LOG_INTERVAL = 10.0
"""Seconds between two progress lines when not on a terminal."""
BAR_DELAY = 1.0
"""Seconds a transfer runs before a bar is shown for it."""


class TransferProgress:
    """Reports the progress of one transfer at a time; a context manager."""

    def __init__(
        self,
        stream: TextIO | None = None,
        terminal: bool | None = None,
        interval: float = LOG_INTERVAL,
        delay: float = BAR_DELAY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._terminal = _is_terminal(self._stream) if terminal is None else terminal
        self._interval = interval
        self._delay = delay
        self._clock = clock
        self._lock = threading.Lock()
        self._label: str | None = None
        self._total: int | None = None
        self._done = 0
        self._started = 0.0
        self._last_line = 0.0
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    def start(self, label: str, total: int | None) -> None:
        """Begin a transfer of about ``total`` bytes (None: unknown), ending any other."""
        self.finish()
        with self._lock:
            self._label = label
            self._total = total if total else None
            self._done = 0
            self._started = self._last_line = self._clock()

    def advance(self, count: int) -> None:
        """Count ``count`` more bytes of the current transfer (ignored between transfers)."""
        with self._lock:
            if self._label is None:
                return
            self._done += count
            now = self._clock()
            if self._terminal:
                self._update_bar(now)
            elif now - self._last_line >= self._interval:
                self._last_line = now
                self._write(self._line(now))

    def finish(self) -> None:
        """End the current transfer, erasing its bar (idempotent)."""
        with self._lock:
            self._label = None
            if self._bar is not None:
                self._bar.stop()
                self._bar = None
                self._task = None

    def close(self) -> None:
        self.finish()

    def __enter__(self) -> TransferProgress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- terminal

    def _update_bar(self, now: float) -> None:
        if self._bar is None:
            if now - self._started < self._delay:
                return
            self._bar, self._task = self._new_bar()
        assert self._task is not None
        total = self._total if self._total is not None and self._done <= self._total else None
        self._bar.update(self._task, completed=self._done, total=total)

    def _new_bar(self) -> tuple[Progress, TaskID]:
        # rich is imported only here: most commands never show a bar.
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=Console(file=self._stream),
            transient=True,
            refresh_per_second=4,
        )
        bar.start()
        task = bar.add_task(self._label or "", total=self._total, completed=self._done)
        return bar, task

    # -- log lines

    def _line(self, now: float) -> str:
        elapsed = max(now - self._started, 1e-9)
        rate = self._done / elapsed
        line = f"{self._label}: {human_bytes(self._done)}"
        if self._total is not None and self._done <= self._total:
            line += f" of about {human_bytes(self._total)}"
            if rate > 0:
                left = human_seconds((self._total - self._done) / rate)
                line += f", {human_bytes(rate)}/s, about {left} left"
        else:
            line += f", {human_bytes(rate)}/s"
        return line

    def _write(self, line: str) -> None:
        try:
            self._stream.write(line + "\n")
            self._stream.flush()
        except (OSError, ValueError):
            pass  # a closed pipe must not fail the backup


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def human_bytes(count: float) -> str:
    """``1.2 GB``: decimal units, as disks and rich count."""
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if count < 1000 or unit == "TB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1000
    raise AssertionError("unreachable")  # pragma: no cover


def human_seconds(seconds: float) -> str:
    """``45 s``, ``3 min 20 s``, ``2 h 5 min``."""
    seconds = int(seconds + 0.5)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"
