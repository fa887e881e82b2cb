"""Making one backup: every source streamed, encrypted and committed by its manifest.

Commit protocol (what makes a backup exist, and what an interruption leaves):

1. the catalog gets a Running entry for the new id;
2. each source becomes one object ``backups/<id>/<source>.<kind>.zst.enc``;
3. the manifest ``backups/<id>/manifest.json`` is written atomically: from
   this moment the backup exists;
4. the catalog entry is replaced by the final record.

A crash before 3 leaves a Running entry and a folder without manifest, which
the next reconcile removes (``staging.cleanup``); a crash between 3 and 4
leaves a committed backup that cleanup re-enters in the catalog.
"""

from __future__ import annotations

import secrets
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

from reconciler.backup.pipeline import BytesCallback, store_object
from reconciler.crypto.envelope import new_data_key, wrap_data_key
from reconciler.errors import SourceError, StorageError
from reconciler.failpoints import failpoint
from reconciler.repository.records import (
    BackupRecord,
    BackupStatus,
    SourceResult,
    SourceStatus,
    backup_dir,
    object_key,
)
from reconciler.repository.store import Repository
from reconciler.sources.command import run_backup_command
from reconciler.sources.files import write_tree
from reconciler.sources.sqlite import snapshot_database
from reconciler.sources.stats import SourceStats
from reconciler.spec.model import BackupConfiguration, CommandSource, FilesSource, Source
from reconciler.spec.secrets import environment_without_secrets
from reconciler.streams import ByteSink
from reconciler.timeutil import compact

OBJECT_SUFFIX = {"files": "tar.zst.enc", "sqlite": "sqlite.zst.enc", "command": "dump.zst.enc"}


def object_name(source: Source) -> str:
    """The stored object's name: says what it is to anyone browsing the share."""
    return f"{source.name}.{OBJECT_SUFFIX[source.kind]}"


def new_backup_id(created_at: datetime) -> str:
    return f"{compact(created_at)}-{secrets.token_hex(3)}"


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
    catalog = repository.read_catalog().backups
    repository.write_catalog((*catalog, record.summary()))
    failpoint("backup-started")
    try:
        results = []
        with tempfile.TemporaryDirectory(prefix="backupctl-") as work:
            for source in config.sources:
                if on_source:
                    on_source(SourceEvent(source.name, None, _last_size(catalog, source.name)))
                result = _back_up_source(
                    repository, record.id, source, data_key, Path(work), env, on_bytes
                )
                results.append(result)
                if on_source:
                    on_source(SourceEvent(source.name, result))
        elapsed = timedelta(seconds=round(time.monotonic() - started, 3))
        record = replace(
            record,
            status=_overall_status(results),
            sources=tuple(results),
            completed_at=created_at + elapsed,
        )
        failpoint("before-manifest")
        repository.write_manifest(record)
    except BaseException:
        _discard(repository, record.id, catalog)
        raise
    failpoint("after-manifest")
    repository.write_catalog((*catalog, record.summary()))
    return record


def _back_up_source(
    repository: Repository,
    backup_id: str,
    source: Source,
    data_key: bytes,
    work: Path,
    env: dict[str, str],
    on_bytes: BytesCallback | None = None,
) -> SourceResult:
    name = object_name(source)
    try:
        stored, stats = store_object(
            repository.storage,
            object_key(backup_id, name),
            data_key,
            lambda out: _produce(source, out, work, env),
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


def _produce(source: Source, out: ByteSink, work: Path, env: dict[str, str]) -> SourceStats:
    if isinstance(source, FilesSource):
        return write_tree(source.path, source.exclude, out)
    if isinstance(source, CommandSource):
        return run_backup_command(
            source.backup, source.timeout_seconds, out, cwd=source.workdir, env=env
        )
    return snapshot_database(source.path, out, work)


def _last_size(catalog: tuple[BackupRecord, ...], source: str) -> int | None:
    """What the newest successful backup of ``source`` stored, None when there is none."""
    for record in reversed(catalog):
        for result in record.sources:
            if result.name == source and result.status is SourceStatus.SUCCEEDED:
                return result.size_bytes
    return None


def _overall_status(results: list[SourceResult]) -> BackupStatus:
    failed = sum(1 for r in results if r.status is SourceStatus.FAILED)
    if failed == 0:
        return BackupStatus.SUCCEEDED
    if failed == len(results):
        return BackupStatus.FAILED
    return BackupStatus.PARTIALLY_SUCCEEDED


def _discard(repository: Repository, backup_id: str, catalog: tuple[BackupRecord, ...]) -> None:
    """Best effort: remove an uncommitted backup. If the storage is gone, the
    Running entry stays and the next reconcile's staging.cleanup removes it."""
    try:
        repository.storage.delete_tree(backup_dir(backup_id))
        repository.write_catalog(catalog)
    except StorageError:
        pass
