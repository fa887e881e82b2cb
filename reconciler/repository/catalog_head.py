"""The catalog's head: what a plan needs to know of every backup, in a few hundred bytes.

The catalog lists every backup, so reading it costs time in proportion to the
history (0.2 s for 10,000 backups). Its first line is this head, written with
it in the same object, so the two can never disagree: the number of backups,
a digest of their ids, the oldest and newest creation times, the keys they
are wrapped to, the oldest time a verification counts from, and in full the
newest backups, those a schedule looks at. A plan reads the head alone and
decides from it when nothing can be due (reconcile.head.head_suffices); otherwise it
reads the whole catalog.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from reconciler.errors import IntegrityError
from reconciler.repository.records import (
    VERIFIED_STATUSES,
    BackupRecord,
    BackupStatus,
    record_from_json,
    record_to_json,
)
from reconciler.timeutil import format_time, parse_time

HEAD_PREFIX = b'{"head": '
"""How a catalog with a head starts: the head is the rest of the first line."""
MAX_HEAD_BYTES = 1024 * 1024
TAIL_LIMIT = 64
"""Backups the head carries in full at most; beyond that a plan reads the catalog."""


@dataclass(frozen=True)
class CatalogHead:
    count: int
    ids_sha256: str
    """SHA-256 of the sorted backup ids, one per line: compared with a listing."""
    running: int
    pending_deletes: int
    oldest_created_at: datetime | None
    newest_created_at: datetime | None
    key_thumbprints: tuple[str, ...]
    """Every certificate a backup's data key is wrapped to, sorted."""
    verify_since: datetime | None
    """The earliest verification time (creation time for a backup never
    verified) of the backups verification checks."""
    tail: tuple[BackupRecord, ...] | None
    """The backups created at or after the newest Succeeded one (all of the
    newest creation time when none succeeded), oldest first; None when more
    than TAIL_LIMIT."""


def ids_digest(ids: Iterable[str]) -> str:
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()


def summarize(backups: tuple[BackupRecord, ...], pending_deletes: tuple[str, ...]) -> CatalogHead:
    """The head of a catalog listing ``backups`` (oldest first)."""
    ordered = sorted(backups, key=lambda b: (b.created_at, b.id))
    since = [b.verified_at or b.created_at for b in ordered if b.status in VERIFIED_STATUSES]
    succeeded = [b.created_at for b in ordered if b.status is BackupStatus.SUCCEEDED]
    tail: tuple[BackupRecord, ...] | None = ()
    if ordered:
        start = max(succeeded) if succeeded else ordered[-1].created_at
        newest = tuple(b.summary() for b in ordered if b.created_at >= start)
        tail = newest if len(newest) <= TAIL_LIMIT else None
    return CatalogHead(
        count=len(ordered),
        ids_sha256=ids_digest(b.id for b in ordered),
        running=sum(1 for b in ordered if b.status is BackupStatus.RUNNING),
        pending_deletes=len(pending_deletes),
        oldest_created_at=ordered[0].created_at if ordered else None,
        newest_created_at=ordered[-1].created_at if ordered else None,
        key_thumbprints=tuple(sorted({b.key_thumbprint for b in ordered})),
        verify_since=min(since, default=None),
        tail=tail,
    )


def head_line(head: CatalogHead) -> bytes:
    """The catalog's first line: ``{"head": {...},`` (compact JSON, no newline inside)."""
    data = {
        "count": head.count,
        "idsSha256": head.ids_sha256,
        "running": head.running,
        "pendingDeletes": head.pending_deletes,
        "oldestCreatedAt": _time(head.oldest_created_at),
        "newestCreatedAt": _time(head.newest_created_at),
        "keyThumbprints": list(head.key_thumbprints),
        "verifySince": _time(head.verify_since),
        "tail": None if head.tail is None else [record_to_json(b) for b in head.tail],
    }
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return HEAD_PREFIX + text.encode() + b",\n"


def parse_head_line(line: bytes, where: str) -> CatalogHead | None:
    """The head in a catalog's first line; None when the catalog has none (it was
    written before heads existed). Raises IntegrityError when it is damaged."""
    if not line.startswith(HEAD_PREFIX):
        return None
    text = line[len(HEAD_PREFIX) :].rstrip()
    if not text.endswith(b","):
        raise IntegrityError(f"{where} is damaged: its head line is incomplete")
    try:
        data: Any = json.loads(text[:-1])
        tail = data["tail"]
        return CatalogHead(
            count=int(data["count"]),
            ids_sha256=str(data["idsSha256"]),
            running=int(data["running"]),
            pending_deletes=int(data["pendingDeletes"]),
            oldest_created_at=_parse(data["oldestCreatedAt"]),
            newest_created_at=_parse(data["newestCreatedAt"]),
            key_thumbprints=tuple(str(k) for k in data["keyThumbprints"]),
            verify_since=_parse(data["verifySince"]),
            tail=None if tail is None else tuple(record_from_json(r, where) for r in tail),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        raise IntegrityError(f"{where} is damaged: its head is not valid") from None


def _time(value: datetime | None) -> str | None:
    return None if value is None else format_time(value)


def _parse(value: Any) -> datetime | None:
    return None if value is None else parse_time(str(value))
