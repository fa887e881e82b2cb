"""The status page's JSON API (``/api/v1/``, ``backupctl status --output json``).

Versioned: every document carries ``"apiVersion": "v1"`` and a ``kind``.
A field is never renamed or removed within v1; new fields may appear. The
schema is schemas/status.schema.json, the documentation docs/api.md. Times
are ISO 8601 UTC; sizes are bytes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from reconciler.timeutil import format_time
from reconciler.usecases.status_model import (
    API_VERSION,
    Alert,
    BackupPage,
    BackupSummary,
    ConfigurationStatus,
    HistoryPoint,
    LastReconcile,
    Progress,
    SourceSummary,
    StatusReport,
)

Json = dict[str, Any]


def status_document(report: StatusReport) -> Json:
    """``GET /api/v1/status``: every configuration."""
    return {
        "apiVersion": API_VERSION,
        "kind": "Status",
        "generatedAt": format_time(report.generated_at),
        "configurations": [configuration_json(c) for c in report.configurations],
    }


def configuration_document(status: ConfigurationStatus, generated_at: datetime) -> Json:
    """``GET /api/v1/configurations/NAME?page=N``: one configuration."""
    return {
        "apiVersion": API_VERSION,
        "kind": "ConfigurationStatus",
        "generatedAt": format_time(generated_at),
        "configuration": configuration_json(status),
    }


def backup_document(configuration: str, backup: BackupSummary, generated_at: datetime) -> Json:
    """``GET /api/v1/configurations/NAME/backups/ID``: one backup."""
    return {
        "apiVersion": API_VERSION,
        "kind": "Backup",
        "generatedAt": format_time(generated_at),
        "configuration": configuration,
        "backup": backup_json(backup),
    }


def configuration_json(status: ConfigurationStatus) -> Json:
    return {
        "name": status.name,
        "location": status.location,
        "health": str(status.health),
        "healthReason": status.health_reason,
        "frequencyHours": status.frequency_hours,
        "lastSuccess": None if status.last_success is None else backup_json(status.last_success),
        "nextBackupAt": _time(status.next_backup_at),
        "lastReconcile": _last_reconcile(status.last_reconcile),
        "keyThumbprint": status.key_thumbprint,
        "certificateSubject": status.certificate_subject,
        "certificateNotAfter": format_time(status.certificate_not_after),
        "repositoryFormat": status.repository_format,
        "alerts": [_alert(a) for a in status.alerts],
        "backupCount": status.backup_count,
        "storedBytes": status.stored_bytes,
        "running": _progress(status.running),
        "history": [_point(p) for p in status.history],
        "backups": _page(status.backups),
    }


def backup_json(backup: BackupSummary) -> Json:
    return {
        "id": backup.id,
        "status": backup.status,
        "createdAt": format_time(backup.created_at),
        "completedAt": _time(backup.completed_at),
        "durationSeconds": backup.duration_seconds,
        "sizeBytes": backup.size_bytes,
        "addedBytes": backup.added_bytes,
        "trigger": backup.trigger,
        "keyThumbprint": backup.key_thumbprint,
        "verifiedAt": _time(backup.verified_at),
        "verificationError": backup.verification_error,
        "sources": [_source(s) for s in backup.sources],
    }


def _source(source: SourceSummary) -> Json:
    return {
        "name": source.name,
        "kind": source.kind,
        "status": source.status,
        "sizeBytes": source.size_bytes,
        "addedBytes": source.added_bytes,
        "items": source.items,
        "error": source.error,
    }


def _alert(alert: Alert) -> Json:
    return {"kind": str(alert.kind), "severity": str(alert.severity), "message": alert.message}


def _last_reconcile(last: LastReconcile | None) -> Json | None:
    if last is None:
        return None
    return {"at": format_time(last.at), "result": last.result, "message": last.message}


def _progress(progress: Progress | None) -> Json | None:
    if progress is None:
        return None
    return {
        "backupId": progress.backup_id,
        "source": progress.source,
        "sourcesDone": progress.sources_done,
        "sourcesTotal": progress.sources_total,
        "bytesStored": progress.bytes_stored,
        "bytesExpected": progress.bytes_expected,
        "startedAt": format_time(progress.started_at),
    }


def _point(point: HistoryPoint) -> Json:
    return {
        "createdAt": format_time(point.created_at),
        "sizeBytes": point.size_bytes,
        "addedBytes": point.added_bytes,
        "durationSeconds": point.duration_seconds,
        "status": point.status,
    }


def _page(page: BackupPage) -> Json:
    return {
        "page": page.page,
        "pageSize": page.page_size,
        "pages": page.pages,
        "total": page.total,
        "items": [backup_json(b) for b in page.items],
    }


def _time(value: datetime | None) -> str | None:
    return None if value is None else format_time(value)
