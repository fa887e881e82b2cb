"""Copying a committed backup from a previous location, verifiably.

The manifest is copied last: until it is written the copy does not exist, so
an interrupted migration leaves only a folder that staging.cleanup removes,
and the next apply copies that backup again. The source is only read."""

from __future__ import annotations

import hashlib

from reconciler.backup.chunked import chunk_ids
from reconciler.dedup.chunk_id import chunk_id_hex
from reconciler.dedup.keys import DerivedKeys
from reconciler.dedup.pack import record_key_id
from reconciler.errors import ConfigError, IntegrityError
from reconciler.failpoints import failpoint
from reconciler.repository.chunkstore import ChunkIndex, ChunkWriter
from reconciler.repository.objects import BackupObject
from reconciler.repository.records import BackupRecord
from reconciler.repository.store import Repository
from reconciler.streams import CHUNK_SIZE


def copy_backup(
    source: Repository, target: Repository, record: BackupRecord, keys: DerivedKeys | None = None
) -> int:
    """Copy ``record`` (a manifest of ``source``) into ``target``; return the bytes copied.

    Every object is checked against the manifest's size and SHA-256 twice: as
    read from the source and as read back from the target. A format 2 backup's
    chunks are copied first, record by record without decrypting, with the
    data keys they are under; both repositories must share the index key
    ``keys`` derives from. Raises IntegrityError (damaged source or copy),
    ConfigError (no shared index key) or StorageError."""
    copied = 0
    if any(s.chunked for s in record.sources):
        if keys is None:
            raise ConfigError(
                f"backup {record.id} is deduplicated (format 2) and {target.description} does"
                " not share its index key, so it cannot be copied"
            )
        copied += _copy_chunks(source, target, record, keys)
    for result in record.sources:
        stored = result.object
        if stored is None:
            continue
        original = source.backup_object(record.id, stored.name)
        copy = target.backup_object(record.id, stored.name)
        size, digest = _copy_object(original, copy)
        if size != stored.size_bytes or digest != stored.sha256:
            copy.delete()
            raise IntegrityError(
                f"{original.label} in {source.description} does not match its manifest;"
                " it was not copied"
            )
        size, digest = _hash_object(copy)
        if size != stored.size_bytes or digest != stored.sha256:
            raise IntegrityError(
                f"the copy of {copy.label} in {target.description} does not match its manifest"
            )
        copied += size
        failpoint("migrate-object")  # an object copied, the manifest not yet
    target.add_copied_backup(record)
    return copied


def _copy_chunks(
    source: Repository, target: Repository, record: BackupRecord, keys: DerivedKeys
) -> int:
    """Copy the chunks of ``record`` that ``target`` lacks; return the stored bytes copied."""
    source_index = source.chunk_index(keys)
    writer = target.chunk_writer(keys, record.id)
    try:
        copied = _copy_missing(source, target, source_index, writer, record, keys)
    except BaseException:
        writer.abandon()
        raise
    writer.finish()
    return copied


def _copy_missing(
    source: Repository,
    target: Repository,
    source_index: ChunkIndex,
    writer: ChunkWriter,
    record: BackupRecord,
    keys: DerivedKeys,
) -> int:
    copied_keys: set[bytes] = set()
    copied = 0
    for result in record.sources:
        if not result.chunked or result.object is None:
            continue
        listed = source.backup_object(record.id, result.object.name)
        for ident, _length in chunk_ids(listed, result.object, keys):
            if writer.stored_length(ident) is not None:
                continue
            entry = source_index.lookup(ident)
            if entry is None:
                raise IntegrityError(
                    f"chunk {chunk_id_hex(ident)[:16]} of backup {record.id} is missing from"
                    f" the index of {source.description}; it was not copied"
                )
            stored = source.read_record(entry)
            key_id = record_key_id(stored)
            if key_id not in copied_keys:
                target.write_data_key(source.read_data_key(key_id.hex()))
                copied_keys.add(key_id)
            copied += writer.add(ident, stored)
    return copied


def _copy_object(source: BackupObject, target: BackupObject) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with source.open_read() as reader, target.open_write() as writer:
        while chunk := reader.read(CHUNK_SIZE):
            digest.update(chunk)
            size += len(chunk)
            writer.write(chunk)
    return size, digest.hexdigest()


def _hash_object(stored: BackupObject) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with stored.open_read() as reader:
        while chunk := reader.read(CHUNK_SIZE):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()
