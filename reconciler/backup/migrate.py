"""Copying a committed backup from a previous location, verifiably.

The manifest is copied last: until it is written the copy does not exist, so
an interrupted migration leaves only a folder that staging.cleanup removes,
and the next apply copies that backup again. The source is only read."""

from __future__ import annotations

import hashlib

from reconciler.errors import IntegrityError
from reconciler.failpoints import failpoint
from reconciler.repository.objects import BackupObject
from reconciler.repository.records import BackupRecord
from reconciler.repository.store import Repository
from reconciler.streams import CHUNK_SIZE


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
