"""What the status page, its JSON API and ``backupctl status`` show: frozen values.

The use case (``usecases.status``) builds a ``StatusReport`` from the
configurations, their repositories and, in the daemon, what the loop last did;
the web layer renders it (HTML, SVG) and the API serialises it. Nothing here
holds a secret: a location is its description, a key its thumbprint."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Health(StrEnum):
    """A configuration's health at a glance (shown by colour and by word)."""

    OK = "ok"
    WARNING = "warning"
    CRITICAL = "critical"
    UNKNOWN = "unknown"
    """Nothing known yet (the daemon has not reconciled it, the storage was not read)."""


class AlertKind(StrEnum):
    """The kinds of alert operators know from the portal, plus ours."""

    CAPACITY = "capacity"
    CONNECTIVITY = "connectivity"
    PATH_OR_PERMISSION = "path-or-permission"
    AUTHENTICATION = "authentication"
    CERTIFICATE_EXPIRY = "certificate-expiry"
    FAILED_VERIFICATION = "failed-verification"
    GENERAL = "general"


@dataclass(frozen=True)
class Alert:
    kind: AlertKind
    severity: Health
    """WARNING or CRITICAL."""
    message: str
    """One sentence; may quote an operator's command's stderr (render escaped)."""


@dataclass(frozen=True)
class SourceSummary:
    name: str
    kind: str
    status: str
    """Succeeded or Failed."""
    size_bytes: int
    added_bytes: int | None
    """Format 2: what this backup added to the storage; None for format 1."""
    items: int
    error: str | None
    """The source's error: may be the last stderr line of a command (render escaped)."""


@dataclass(frozen=True)
class BackupSummary:
    id: str
    status: str
    """Running, Succeeded, PartiallySucceeded, Failed or Corrupt."""
    created_at: datetime
    completed_at: datetime | None
    duration_seconds: float | None
    size_bytes: int
    added_bytes: int | None
    trigger: str
    key_thumbprint: str
    verified_at: datetime | None
    verification_error: str | None
    sources: tuple[SourceSummary, ...]


@dataclass(frozen=True)
class Progress:
    """A backup the daemon is making now."""

    backup_id: str | None
    source: str | None
    """The source being backed up, None between sources."""
    sources_done: int
    sources_total: int
    bytes_stored: int
    bytes_expected: int | None
    """A guess: what the source's previous backup stored."""
    started_at: datetime


@dataclass(frozen=True)
class LastReconcile:
    at: datetime
    result: str
    """success, failed or locked (as the daemon's metric says)."""
    message: str | None
    """What failed, one sentence; None on success."""


@dataclass(frozen=True)
class HistoryPoint:
    """One backup on the charts of stored size and duration over time."""

    created_at: datetime
    size_bytes: int
    added_bytes: int | None
    duration_seconds: float | None
    status: str


@dataclass(frozen=True)
class BackupPage:
    """One page of a configuration's backups, newest first."""

    items: tuple[BackupSummary, ...]
    page: int
    """1-based."""
    page_size: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.page_size))


@dataclass(frozen=True)
class ConfigurationStatus:
    name: str
    location: str
    """The storage location's description (never a secret)."""
    health: Health
    health_reason: str
    """Why, in one sentence (e.g. the last Succeeded backup is 30 hours old, the
    schedule asks for one every 12)."""
    frequency_hours: int | None
    """None when the schedule is disabled."""
    last_success: BackupSummary | None
    next_backup_at: datetime | None
    last_reconcile: LastReconcile | None
    """None outside the daemon, or before its first reconcile of this configuration."""
    key_thumbprint: str
    certificate_subject: str
    certificate_not_after: datetime
    repository_format: int | None
    """1 or 2; None when the repository could not be read or does not exist."""
    alerts: tuple[Alert, ...]
    backup_count: int
    stored_bytes: int
    running: Progress | None
    history: tuple[HistoryPoint, ...]
    """For the charts, oldest first, at most ``MAX_HISTORY_POINTS`` (evenly thinned)."""
    backups: BackupPage


@dataclass(frozen=True)
class StatusReport:
    generated_at: datetime
    configurations: tuple[ConfigurationStatus, ...]


MAX_HISTORY_POINTS = 500
"""A chart of more points is no clearer; 10,000 backups are thinned to this."""
DEFAULT_PAGE_SIZE = 50
API_VERSION = "v1"
