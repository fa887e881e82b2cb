"""Builders for planner tests: configurations, applied settings, backups, observed states."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from reconciler.crypto.certificates import Certificate, load_certificate
from reconciler.reconcile.state import ObservedState
from reconciler.repository.records import (
    AppliedSettings,
    BackupRecord,
    BackupStatus,
    KeyHistoryEntry,
)
from reconciler.spec.model import (
    BackupConfiguration,
    CommandSource,
    Encryption,
    LocalLocation,
    Origin,
    Retention,
    Schedule,
)

ROOT = Path(__file__).resolve().parents[2]
DEMO_CERT = load_certificate(ROOT / "examples" / "keys" / "demo-backup.cer")
PLAN_SCHEMA = json.loads((ROOT / "schemas" / "plan.schema.json").read_text(encoding="utf-8"))
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
LOCATION = "local folder /srv/backups/region-west"

_ids = itertools.count(1)


def make_config(
    certificate: Certificate = DEMO_CERT,
    rewrap: bool = False,
    **changes: Any,
) -> BackupConfiguration:
    """A valid configuration encrypted to ``certificate``."""
    config = BackupConfiguration(
        name="region-west",
        origin=Origin(Path("/etc/backupctl/region-west.yaml"), 4),
        storage=LocalLocation(Path("/srv/backups")),
        migration_from=None,
        encryption=Encryption(Path("backup.cer"), certificate, rewrap, ()),
        schedule=Schedule(enabled=True, frequency_hours=12, retry_after_minutes=30),
        retention=Retention(days=7, min_backups=2),
        trigger="",
        verification=None,
        sources=(CommandSource("key-vault", ("printf", "x"), None, 60, Path("/tmp")),),
        digest="0" * 64,
    )
    return replace(config, **changes)


def history_entry(certificate: Certificate, retired: bool) -> KeyHistoryEntry:
    return KeyHistoryEntry(
        certificate.thumbprint,
        certificate.public_key_sha256,
        certificate.subject,
        certificate.not_after,
        NOW - timedelta(days=60),
        NOW - timedelta(days=10) if retired else None,
    )


def applied(config: BackupConfiguration, *earlier: Certificate) -> AppliedSettings:
    """The settings a repository holds after applying ``config``, having used ``earlier`` keys."""
    cert = config.encryption.certificate
    return AppliedSettings(
        schedule_enabled=config.schedule.enabled,
        frequency_hours=config.schedule.frequency_hours,
        retry_after_minutes=config.schedule.retry_after_minutes,
        retention_days=config.retention.days,
        min_backups=config.retention.min_backups,
        verification_days=config.verification.frequency_days if config.verification else None,
        active_key=cert.thumbprint,
        key_history=(*(history_entry(c, True) for c in earlier), history_entry(cert, False)),
        credentials=None,
        last_trigger=config.trigger,
    )


def backup(
    status: BackupStatus = BackupStatus.SUCCEEDED,
    *,
    age: timedelta,
    key: Certificate = DEMO_CERT,
    verified_ago: timedelta | None = None,
) -> BackupRecord:
    """A catalog entry created ``age`` before NOW, wrapped to ``key``."""
    created = NOW - age
    return BackupRecord(
        id=f"{created:%Y%m%dT%H%M%SZ}-{next(_ids):06x}",
        configuration="region-west",
        status=status,
        created_at=created,
        started_at=created,
        completed_at=created + timedelta(minutes=1),
        trigger="scheduled",
        key_thumbprint=key.thumbprint,
        sources=(),
        verified_at=None if verified_ago is None else NOW - verified_ago,
    )


def observed(settings: AppliedSettings, *backups: BackupRecord, **changes: Any) -> ObservedState:
    """An initialized repository holding ``backups`` (oldest first)."""
    state = replace(
        ObservedState.empty(LOCATION),
        initialized=True,
        settings=settings,
        backups=tuple(sorted(backups, key=lambda b: (b.created_at, b.id))),
    )
    return replace(state, **changes)
