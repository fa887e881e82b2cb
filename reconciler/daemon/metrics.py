"""The daemon's Prometheus metrics, in a registry of its own.

Names are the contract's (PRODUCT.md, "Daemon metrics"). Both histograms carry
a ``configuration`` label too, so that one daemon reconciling several
configurations can still tell their backups apart."""

from __future__ import annotations

import contextlib
from datetime import datetime
from enum import StrEnum

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from reconciler.repository.records import BackupRecord, BackupStatus, newest_succeeded

STATUS_CODES = {
    BackupStatus.SUCCEEDED: 0,
    BackupStatus.PARTIALLY_SUCCEEDED: 1,
    BackupStatus.FAILED: 2,
    BackupStatus.CORRUPT: 3,
}
"""``backupctl_backup_last_status``: 0 is good, anything else needs attention."""

_DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 28800)
_SIZE_BUCKETS = tuple(float(10**n) for n in range(3, 14))  # 1 kB .. 10 TB


class ReconcileResult(StrEnum):
    SUCCESS = "success"
    """Every planned action done (or nothing to do)."""
    FAILED = "failed"
    """An action failed, or the configuration could not be reconciled at all."""
    LOCKED = "locked"
    """Another process holds the repository lock; nothing was done."""


class DaemonMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ["configuration"]
        self.last_success = Gauge(
            "backupctl_backup_last_success_timestamp_seconds",
            "Completion time (Unix seconds) of the newest Succeeded backup.",
            labels,
            registry=self.registry,
        )
        self.last_status = Gauge(
            "backupctl_backup_last_status",
            "Status of the newest finished backup: 0 Succeeded, 1 PartiallySucceeded,"
            " 2 Failed, 3 Corrupt.",
            labels,
            registry=self.registry,
        )
        self.duration = Histogram(
            "backupctl_backup_duration_seconds",
            "How long the backups this daemon made took.",
            labels,
            buckets=_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.size = Histogram(
            "backupctl_backup_size_bytes",
            "Stored (compressed, encrypted) size of the backups this daemon made.",
            labels,
            buckets=_SIZE_BUCKETS,
            registry=self.registry,
        )
        self.reconciles = Counter(
            "backupctl_reconcile",
            "Reconciles of a configuration, by result (success, failed, locked).",
            ["configuration", "result"],
            registry=self.registry,
        )
        self.pending = Gauge(
            "backupctl_plan_pending_actions",
            "Planned actions the last reconcile did not complete (0 when up to date).",
            labels,
            registry=self.registry,
        )
        self.storage_available = Gauge(
            "backupctl_storage_available",
            "1 when the last reconcile could reach the storage, else 0.",
            labels,
            registry=self.registry,
        )
        self.certificate_expiry = Gauge(
            "backupctl_certificate_expiry_timestamp_seconds",
            "When the certificate new backups are encrypted to expires (Unix seconds).",
            labels,
            registry=self.registry,
        )

    def reconciled(
        self, name: str, result: ReconcileResult, pending: int | None, storage_ok: bool
    ) -> None:
        """Record one reconcile of ``name``; ``pending`` None leaves the gauge as it was."""
        self.reconciles.labels(name, str(result)).inc()
        if pending is not None:
            self.pending.labels(name).set(pending)
        self.storage_available.labels(name).set(1 if storage_ok else 0)

    def backup_made(self, name: str, record: BackupRecord) -> None:
        if record.duration_seconds is not None:
            self.duration.labels(name).observe(record.duration_seconds)
        self.size.labels(name).observe(record.size_bytes)

    def repository_seen(self, name: str, backups: tuple[BackupRecord, ...]) -> None:
        """Update the last-success and last-status gauges from the catalog."""
        finished = [b for b in backups if b.status is not BackupStatus.RUNNING]
        if finished:
            newest = max(finished, key=lambda b: (b.created_at, b.id))
            self.last_status.labels(name).set(STATUS_CODES[newest.status])
        success = newest_succeeded(backups)
        if success is not None:
            self.last_success.labels(name).set(
                (success.completed_at or success.created_at).timestamp()
            )

    def certificate_seen(self, name: str, not_after: datetime) -> None:
        """Record when the certificate of ``name`` expires (set when a configuration loads)."""
        self.certificate_expiry.labels(name).set(not_after.timestamp())

    def forget(self, name: str) -> None:
        """Drop the series of a configuration that was removed from the files."""
        for metric in (
            self.last_success,
            self.last_status,
            self.pending,
            self.storage_available,
            self.certificate_expiry,
        ):
            with contextlib.suppress(KeyError):
                metric.remove(name)

    def exposition(self) -> bytes:
        """The metrics in the Prometheus text format."""
        return generate_latest(self.registry)
