"""Values as a person reads them: sizes, durations, times and ages.

Plain text out; the caller escapes (these never hold markup, but a value that
came from a repository is still the caller's to escape)."""

from __future__ import annotations

from datetime import datetime

from reconciler.timeutil import format_time, utc

_SIZE_UNITS = ("B", "kB", "MB", "GB", "TB", "PB")


def size(value: int | float) -> str:
    """Decimal units, three significant digits: '1.23 GB', '512 B'."""
    amount = float(value)
    for unit in _SIZE_UNITS:
        if abs(amount) < 1000 or unit == _SIZE_UNITS[-1]:
            if unit == "B":
                return f"{int(amount)} B"
            return f"{_three_digits(amount)} {unit}"
        amount /= 1000
    raise AssertionError("unreachable")


def _three_digits(amount: float) -> str:
    if abs(amount) >= 100:
        return f"{amount:.0f}"
    if abs(amount) >= 10:
        return f"{amount:.1f}".removesuffix(".0")
    return f"{amount:.2f}".rstrip("0").removesuffix(".")


def duration(seconds: float) -> str:
    """'45 s', '12 min 5 s', '3 h 20 min', '2 d 4 h'."""
    total = round(seconds)
    if total < 60:
        return f"{total} s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def when(moment: datetime) -> str:
    """'2026-12-05 14:03 UTC': minutes are enough to read, the machine form is
    in the ``<time datetime>`` beside it."""
    return utc(moment).strftime("%Y-%m-%d %H:%M UTC")


def day(moment: datetime) -> str:
    """'2026-12-05' (UTC)."""
    return utc(moment).strftime("%Y-%m-%d")


def machine_time(moment: datetime) -> str:
    return format_time(moment)


def relative(moment: datetime, now: datetime) -> str:
    """'3 h ago', 'in 20 min', 'just now'."""
    delta = (utc(moment) - utc(now)).total_seconds()
    if abs(delta) < 60:
        return "just now"
    text = duration(abs(delta))
    # "2 h 5 min ago" reads slower than "2 h ago" and says no more at a glance.
    text = " ".join(text.split()[:2])
    return f"in {text}" if delta > 0 else f"{text} ago"
