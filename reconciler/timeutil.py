"""Times as backupctl writes them: UTC, ISO 8601 with a Z, whole seconds."""

from __future__ import annotations

from datetime import UTC, datetime


def utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def format_time(moment: datetime) -> str:
    return utc(moment).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    """Parse ISO 8601; a time without zone is taken as UTC. Raises ValueError."""
    if len(text) == 20 and text[19] == "Z" and text[10] == "T":
        # What format_time writes (catalogs hold thousands): the C parser alone.
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            pass
    return utc(datetime.fromisoformat(text.strip().replace("z", "Z").replace("Z", "+00:00")))


def now_utc() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def compact(moment: datetime) -> str:
    """``20261125T120000Z``: sortable, safe in file names."""
    return utc(moment).strftime("%Y%m%dT%H%M%SZ")


def describe_age(hours: float) -> str:
    """'30h' under two days, else days with one decimal ('7.2d'), so that an
    age just over a limit never reads as equal to it."""
    if hours < 48:
        return f"{hours:.0f}h"
    return f"{hours / 24:.1f}".removesuffix(".0") + "d"
