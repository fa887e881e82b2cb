"""The daemon's log: one line per event, as text or as a JSON object.

JSON lines carry ``time``, ``level``, ``configuration`` (null for the daemon
itself), ``event`` and ``message``. Messages are our own sentences, which never
hold a secret; as a second line of defence every resolved secret value the
configurations use is masked before a line is written."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from enum import StrEnum
from typing import TextIO

MASK = "***"
_MIN_MASKED_LENGTH = 4
"""Shorter values would mask ordinary words; a secret that short protects nothing."""


class Level(StrEnum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class EventLog:
    def __init__(
        self,
        stream: TextIO,
        json_lines: bool = False,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._stream = stream
        self._json = json_lines
        self._clock = clock
        self._secrets: tuple[str, ...] = ()
        self._lock = threading.Lock()

    def mask(self, secrets: Iterable[str]) -> None:
        """Mask these values in every later line (longest first, so none is half-masked)."""
        usable = {s for s in secrets if len(s) >= _MIN_MASKED_LENGTH}
        self._secrets = tuple(sorted(usable, key=len, reverse=True))

    def info(self, event: str, message: str, configuration: str | None = None) -> None:
        self.write(Level.INFO, event, message, configuration)

    def warning(self, event: str, message: str, configuration: str | None = None) -> None:
        self.write(Level.WARNING, event, message, configuration)

    def error(self, event: str, message: str, configuration: str | None = None) -> None:
        self.write(Level.ERROR, event, message, configuration)

    def write(self, level: Level, event: str, message: str, configuration: str | None) -> None:
        for secret in self._secrets:
            message = message.replace(secret, MASK)
        moment = self._clock().astimezone(UTC)
        stamp = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        if self._json:
            line = json.dumps(
                {
                    "time": stamp,
                    "level": str(level),
                    "configuration": configuration,
                    "event": event,
                    "message": message,
                },
                ensure_ascii=False,
            )
        else:
            where = f"{configuration}: " if configuration else ""
            line = f"{stamp} {level.upper():<7} {where}{event}: {message}"
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()
