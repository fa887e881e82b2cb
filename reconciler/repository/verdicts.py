"""What a verification found, as the repository records it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from reconciler.repository.records import BackupRecord, BackupStatus, status_of_sources


@dataclass(frozen=True)
class Verdict:
    """One backup checked: intact (no problems) or damaged."""

    backup_id: str
    full: bool
    """True when the data was decrypted and parsed, False for size and SHA-256 only."""
    problems: tuple[str, ...] = ()

    @property
    def damaged(self) -> bool:
        return bool(self.problems)


def with_verdict(record: BackupRecord, verdict: Verdict, at: datetime) -> BackupRecord:
    """``record`` carrying ``verdict``'s result, time and status.

    A damaged backup becomes Corrupt. A Corrupt backup becomes again what its
    sources say only after an intact full verification: a size and SHA-256
    check cannot see damage a full one found (a broken wrapped key, say)."""
    status = record.status
    if verdict.damaged:
        status = BackupStatus.CORRUPT
    elif status is BackupStatus.CORRUPT and verdict.full:
        status = status_of_sources(record.sources)
    error = "; ".join(verdict.problems) or None
    return replace(record, status=status, verified_at=at, verification_error=error)
