"""Making one backup: every source streamed, encrypted and committed.

The repository owns the commit protocol (``Repository.begin_backup``): what
makes a backup exist, and what an interruption leaves."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

from reconciler.backup.pipeline import BytesCallback, store_object
from reconciler.crypto.envelope import new_data_key, wrap_data_key
from reconciler.errors import SourceError
from reconciler.failpoints import failpoint
from reconciler.repository.layout import new_backup_id, object_name
from reconciler.repository.records import (
    BackupRecord,
    BackupStatus,
    SourceResult,
    SourceStatus,
    status_of_sources,
)
from reconciler.repository.store import PendingBackup, Repository
from reconciler.sources.kind import kind_of
from reconciler.spec.model import BackupConfiguration, Source
from reconciler.spec.secrets import environment_without_secrets


@dataclass(frozen=True)
class SourceEvent:
    source: str
    result: SourceResult | None
    expected_bytes: int | None = None
    """When a source starts: what its last successful backup stored (a guess at
    how much this one will store, for progress), None when there is none."""


ProgressCallback = Callable[[SourceEvent], None]


def run_backup(
    repository: Repository,
    config: BackupConfiguration,
    created_at: datetime,
    trigger: str,
    on_source: ProgressCallback | None = None,
    on_bytes: BytesCallback | None = None,
) -> BackupRecord:
    """Make and commit one backup of every source; return its record.

    ``on_source`` hears when each source starts and ends, ``on_bytes`` how many
    bytes are stored as they are written (progress).

    A failing source is recorded in the result (PartiallySucceeded or Failed).
    Raises StorageError when the storage fails; then nothing is committed and
    what was written is removed when possible."""
    certificate = config.encryption.certificate
    data_key = new_data_key()
    started = time.monotonic()
    record = BackupRecord(
        id=new_backup_id(created_at),
        configuration=config.name,
        status=BackupStatus.RUNNING,
        created_at=created_at,
        started_at=created_at,
        completed_at=None,
        trigger=trigger,
        key_thumbprint=certificate.thumbprint,
        sources=(),
        wrapped_key=wrap_data_key(data_key, certificate),
    )
    env = environment_without_secrets(config)
    pending = repository.begin_backup(record)
    failpoint("backup-started")
    try:
        results = []
        with tempfile.TemporaryDirectory(prefix="backupctl-") as work:
            for source in config.sources:
                if on_source:
                    expected = _last_size(pending.others, source.name)
                    on_source(SourceEvent(source.name, None, expected))
                result = _back_up_source(pending, source, data_key, Path(work), env, on_bytes)
                results.append(result)
                if on_source:
                    on_source(SourceEvent(source.name, result))
        elapsed = timedelta(seconds=round(time.monotonic() - started, 3))
        record = replace(
            record,
            status=status_of_sources(tuple(results)),
            sources=tuple(results),
            completed_at=created_at + elapsed,
        )
    except BaseException:
        pending.abandon()
        raise
    pending.commit(record)
    return record


def _back_up_source(
    pending: PendingBackup,
    source: Source,
    data_key: bytes,
    work: Path,
    env: dict[str, str],
    on_bytes: BytesCallback | None = None,
) -> SourceResult:
    try:
        stored, stats = store_object(
            pending.object(object_name(source.name, source.kind)),
            data_key,
            lambda out: kind_of(source).produce(source, out, work, env),
            on_bytes,
        )
    except SourceError as exc:
        return SourceResult(source.name, source.kind, SourceStatus.FAILED, 0, 0, 0, str(exc), None)
    return SourceResult(
        name=source.name,
        kind=source.kind,
        status=SourceStatus.SUCCEEDED,
        size_bytes=stored.size_bytes,
        content_bytes=stats.content_bytes,
        items=stats.items,
        error=None,
        object=stored,
    )


def _last_size(catalog: tuple[BackupRecord, ...], source: str) -> int | None:
    """What the newest successful backup of ``source`` stored, None when there is none."""
    for record in reversed(catalog):
        for result in record.sources:
            if result.name == source and result.status is SourceStatus.SUCCEEDED:
                return result.size_bytes
    return None
