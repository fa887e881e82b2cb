"""Making one backup: every source streamed, encrypted and committed.

The repository owns the commit protocol (``Repository.begin_backup``): what
makes a backup exist, and what an interruption leaves."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

from reconciler.backup.cached_files import SourceCache
from reconciler.backup.chunked import RunKeys, store_chunked
from reconciler.backup.pipeline import BytesCallback, store_object
from reconciler.crypto.envelope import new_data_key, wrap_data_key
from reconciler.dedup.file_cache import FileCache, cache_dir
from reconciler.dedup.keys import IndexKey
from reconciler.errors import IntegrityError, SourceError, StorageError
from reconciler.failpoints import failpoint
from reconciler.repository.chunkstore import ChunkWriter
from reconciler.repository.keyfiles import KEY_ID_BYTES, DataKeyRecord, backup_index_key
from reconciler.repository.layout import chunk_list_name, new_backup_id, object_name
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
from reconciler.spec.secrets import configured_index_key, environment_without_secrets


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
    what was written is removed when possible.

    Format 2 uses the backup host's file cache (``cache_dir``, one file per
    repository): unchanged large files are not read. The cache this run
    writes replaces the old one only when the backup is committed with at
    least one source stored; a cache that cannot be read or written costs
    time (a warning in the log), never the backup."""
    certificate = config.encryption.certificate
    data_key = new_data_key()
    # Format 2: the index key is checked before anything is written.
    index_key = _index_key(repository, config) if repository.format_version >= 2 else None
    chunking = None
    if index_key is not None:
        chunking = RunKeys(index_key.derive(), os.urandom(KEY_ID_BYTES), data_key)
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
        # Format 2 keeps the run's data key in its own record (packs outlive the run).
        wrapped_key=None if chunking is not None else wrap_data_key(data_key, certificate),
    )
    env = environment_without_secrets(config)
    pending = repository.begin_backup(record)
    failpoint("backup-started")
    writer = None
    with (
        FileCache(cache_dir(os.environ), index_key, repository.description)
        if index_key is not None
        else nullcontext(None)
    ) as file_cache:
        try:
            results = []
            if chunking is not None:
                usable = repository.data_keys_wrapped_to(certificate.public_key_sha256)
                key_record = DataKeyRecord(
                    chunking.key_id.hex(), (wrap_data_key(data_key, certificate),)
                )
                writer = repository.chunk_writer(chunking.derived, record.id, usable, key_record)
            with tempfile.TemporaryDirectory(prefix="backupctl-") as work:
                for source in config.sources:
                    if on_source:
                        expected = _last_size(pending.others, source.name)
                        on_source(SourceEvent(source.name, None, expected))
                    if writer is not None and chunking is not None:
                        cache = None if file_cache is None else SourceCache(file_cache, source.name)
                        result = _chunk_source(
                            pending, source, writer, chunking, Path(work), env, on_bytes, cache
                        )
                    else:
                        result = _back_up_source(
                            pending, source, data_key, Path(work), env, on_bytes
                        )
                    results.append(result)
                    if on_source:
                        on_source(SourceEvent(source.name, result))
            if writer is not None:
                writer.finish()  # the run's chunks are indexed before its manifest names them
            elapsed = timedelta(seconds=round(time.monotonic() - started, 3))
            record = replace(
                record,
                status=status_of_sources(tuple(results)),
                sources=tuple(results),
                completed_at=created_at + elapsed,
            )
        except BaseException:
            if writer is not None:
                writer.abandon()
            pending.abandon()
            raise
        pending.commit(record)
        # The new cache names only chunks this committed backup references
        # (a run that stored nothing keeps the old cache, which is as good).
        if file_cache is not None and record.status is not BackupStatus.FAILED:
            file_cache.commit()
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


def _index_key(repository: Repository, config: BackupConfiguration) -> IndexKey:
    record = repository.read_index_key()
    if record is None:
        raise IntegrityError(f"{repository.description} is format 2 but keeps no index key")
    return backup_index_key(record, configured_index_key(config), repository.description)


def _chunk_source(
    pending: PendingBackup,
    source: Source,
    writer: ChunkWriter,
    keys: RunKeys,
    work: Path,
    env: dict[str, str],
    on_bytes: BytesCallback | None = None,
    file_cache: SourceCache | None = None,
) -> SourceResult:
    kind = kind_of(source)
    try:
        chunked, stats = store_chunked(
            pending.object(chunk_list_name(source.name, source.kind)),
            writer,
            keys,
            lambda out, known: kind.produce(source, out, work, env, known),
            kind.stream_is_tar,
            on_bytes,
            file_cache,
        )
    except SourceError as exc:
        return SourceResult(source.name, source.kind, SourceStatus.FAILED, 0, 0, 0, str(exc), None)
    except StorageError as exc:
        # Packs are shared by sources: say which source was being stored.
        raise type(exc)(f"while storing source {source.name}: {exc}") from None
    return SourceResult(
        name=source.name,
        kind=source.kind,
        status=SourceStatus.SUCCEEDED,
        size_bytes=chunked.referenced_bytes,
        content_bytes=stats.content_bytes,
        items=stats.items,
        error=None,
        object=chunked.chunk_list,
        chunks=chunked.chunks,
        added_bytes=chunked.added_bytes,
    )


def _last_size(catalog: tuple[BackupRecord, ...], source: str) -> int | None:
    """What the newest successful backup of ``source`` stored, None when there is none."""
    for record in reversed(catalog):
        for result in record.sources:
            if result.name == source and result.status is SourceStatus.SUCCEEDED:
                return result.size_bytes
    return None
