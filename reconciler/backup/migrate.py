"""Copying a committed backup from a previous location, verifiably.

The manifest is copied last: until it is written the copy does not exist, so
an interrupted migration leaves only a folder that staging.cleanup removes,
and the next apply copies that backup again. The source is only read."""

from __future__ import annotations

import hashlib

from reconciler.errors import IntegrityError
from reconciler.failpoints import failpoint
from reconciler.repository.records import BackupRecord, object_key
from reconciler.repository.store import Repository
from reconciler.storage.base import CHUNK_SIZE, Storage


def copy_backup(source: Repository, target: Repository, record: BackupRecord) -> int:
    """Copy ``record`` (a manifest of ``source``) into ``target``; return the bytes copied.

    Every object is checked against the manifest's size and SHA-256 twice: as
    read from the source and as read back from the target. Raises
    IntegrityError (damaged source or copy) or StorageError."""
    copied = 0
    for result in record.sources:
        stored = result.object
        if stored is None:
            continue
        key = object_key(record.id, stored.name)
        size, digest = _copy_object(source.storage, target.storage, key)
        if size != stored.size_bytes or digest != stored.sha256:
            target.storage.delete(key)
            raise IntegrityError(
                f"{key} in {source.description} does not match its manifest; it was not copied"
            )
        size, digest = _hash_object(target.storage, key)
        if size != stored.size_bytes or digest != stored.sha256:
            raise IntegrityError(
                f"the copy of {key} in {target.description} does not match its manifest"
            )
        copied += size
        failpoint("migrate-object")  # an object copied, the manifest not yet
    target.write_manifest(record)
    return copied


def _copy_object(source: Storage, target: Storage, key: str) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with source.open_read(key) as reader, target.open_write(key) as writer:
        while chunk := reader.read(CHUNK_SIZE):
            digest.update(chunk)
            size += len(chunk)
            writer.write(chunk)
    return size, digest.hexdigest()


def _hash_object(storage: Storage, key: str) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with storage.open_read(key) as reader:
        while chunk := reader.read(CHUNK_SIZE):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()
