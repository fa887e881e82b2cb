"""Hand-built status reports for the page tests (the builder is tested on its own)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from reconciler.usecases.status_model import (
    Alert,
    AlertKind,
    BackupPage,
    BackupSummary,
    ConfigurationStatus,
    Health,
    HistoryPoint,
    LastReconcile,
    Progress,
    SourceSummary,
    StatusReport,
)

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def source(name: str = "db", status: str = "Succeeded", error: str | None = None) -> SourceSummary:
    return SourceSummary(
        name=name,
        kind="command",
        status=status,
        size_bytes=12_000_000,
        added_bytes=1_000_000,
        items=1,
        error=error,
    )


def backup(
    number: int,
    status: str = "Succeeded",
    sources: tuple[SourceSummary, ...] | None = None,
    start: datetime = NOW,
) -> BackupSummary:
    created = start - timedelta(hours=12 * number)
    return BackupSummary(
        id=f"{created:%Y%m%dT%H%M%SZ}-{number:04x}",
        status=status,
        created_at=created,
        completed_at=created + timedelta(seconds=90),
        duration_seconds=90.0 + number % 7,
        size_bytes=20_000_000 + number * 1000,
        added_bytes=500_000,
        trigger="nightly",
        key_thumbprint="sha256:5f1c0a",
        verified_at=None,
        verification_error=None,
        sources=sources if sources is not None else (source("db"), source("files")),
    )


def history(count: int, start: datetime = NOW) -> tuple[HistoryPoint, ...]:
    points = []
    for i in reversed(range(count)):
        b = backup(i, start=start)
        points.append(
            HistoryPoint(b.created_at, b.size_bytes, b.added_bytes, b.duration_seconds, b.status)
        )
    return tuple(points)


def configuration(
    name: str = "region-west",
    health: Health = Health.OK,
    backups: tuple[BackupSummary, ...] | None = None,
    total: int | None = None,
    page: int = 1,
    page_size: int = 50,
    **changes: object,
) -> ConfigurationStatus:
    items = backups if backups is not None else tuple(backup(i) for i in range(3))
    status = ConfigurationStatus(
        name=name,
        location="/srv/backups/region-west",
        health=health,
        health_reason="the last Succeeded backup is 2 hours old (one every 12 hours)",
        frequency_hours=12,
        last_success=items[0] if items else None,
        next_backup_at=NOW + timedelta(hours=10),
        last_reconcile=LastReconcile(NOW - timedelta(minutes=3), "success", None),
        key_thumbprint="sha256:5f1c0a",
        certificate_subject="CN=backups",
        certificate_not_after=NOW + timedelta(days=300),
        repository_format=2,
        alerts=(),
        backup_count=total if total is not None else len(items),
        stored_bytes=60_000_000,
        running=None,
        history=history(len(items)),
        backups=BackupPage(items, page, page_size, total if total is not None else len(items)),
    )
    return replace(status, **changes)  # type: ignore[arg-type]


def report(*configs: ConfigurationStatus) -> StatusReport:
    return StatusReport(generated_at=NOW, configurations=configs or (configuration(),))


def running(**changes: object) -> Progress:
    progress = Progress(
        backup_id="20261205T115500Z-beef",
        source="db",
        sources_done=1,
        sources_total=2,
        bytes_stored=3_000_000,
        bytes_expected=12_000_000,
        started_at=NOW - timedelta(minutes=5),
    )
    return replace(progress, **changes)  # type: ignore[arg-type]


def alert(kind: AlertKind, message: str, severity: Health = Health.CRITICAL) -> Alert:
    return Alert(kind, severity, message)
