"""Typed reads and writes of the repository's objects on a Storage."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from reconciler.errors import IntegrityError, ObjectNotFoundError, StorageError
from reconciler.failpoints import failpoint
from reconciler.repository.catalog_head import (
    MAX_HEAD_BYTES,
    CatalogHead,
    head_line,
    parse_head_line,
    summarize,
)
from reconciler.repository.records import (
    BACKUPS_DIR,
    CATALOG_KEY,
    FORMAT_KEY,
    FORMAT_NAME,
    FORMAT_VERSION,
    MANIFEST_NAME,
    SETTINGS_KEY,
    AppliedSettings,
    BackupRecord,
    BackupStatus,
    dumps,
    loads,
    manifest_key,
    record_from_json,
    record_to_json,
    settings_from_json,
    settings_to_json,
)
from reconciler.storage.base import Storage
from reconciler.timeutil import format_time


@dataclass(frozen=True)
class Catalog:
    """The backups a repository holds, oldest first (ties in creation order)."""

    backups: tuple[BackupRecord, ...]
    damaged: str | None = None
    """Why the stored catalog could not be used (it was rebuilt), else None."""
    pending_deletes: tuple[str, ...] = ()
    """Backups a prune took out of the catalog but may not have finished deleting."""


HEAD_READ_SIZE = 16 * 1024
"""A catalog's head is a few hundred bytes, up to some 60 KiB with a long tail."""


class Repository:
    """One repository folder (``<location>/<name>/``) on a Storage."""

    def __init__(self, storage: Storage, name: str) -> None:
        self.storage = storage
        self.name = name

    @property
    def description(self) -> str:
        return f"repository {self.name} in {self.storage.description}"

    def _where(self, key: str) -> str:
        return f"{key} in {self.description}"

    # ------------------------------------------------------------- format

    def is_initialized(self) -> bool:
        """True when the format marker exists and is one this version reads.

        Raises IntegrityError for a damaged marker or a newer format."""
        try:
            raw = self.storage.read(FORMAT_KEY)
        except ObjectNotFoundError:
            return False
        data = loads(raw, self._where(FORMAT_KEY))
        if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
            raise IntegrityError(f"{self._where(FORMAT_KEY)} is not a backupctl format marker")
        version = data.get("version")
        if version != FORMAT_VERSION:
            raise IntegrityError(
                f"{self.description} uses repository format {version}, but this backupctl"
                f" reads format {FORMAT_VERSION}; upgrade backupctl"
            )
        return True

    def write_format(self, now: datetime) -> None:
        marker = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "name": self.name,
            "createdAt": format_time(now),
        }
        self.storage.write_atomic(FORMAT_KEY, dumps(marker))

    # ------------------------------------------------------------- settings

    def read_settings(self) -> AppliedSettings | None:
        try:
            raw = self.storage.read(SETTINGS_KEY)
        except ObjectNotFoundError:
            return None
        return settings_from_json(loads(raw, self._where(SETTINGS_KEY)), self._where(SETTINGS_KEY))

    def write_settings(self, settings: AppliedSettings) -> None:
        self.storage.write_atomic(SETTINGS_KEY, dumps(settings_to_json(settings)))

    # ------------------------------------------------------------- catalog

    def read_catalog(self) -> Catalog:
        """The stored catalog, or one rebuilt from the manifests when it is missing or damaged."""
        try:
            raw = self.storage.read(CATALOG_KEY)
        except ObjectNotFoundError:
            return Catalog(self.scan_manifests(), damaged="the catalog is missing")
        try:
            with _collector_paused():
                data = loads(raw, self._where(CATALOG_KEY))
                if not isinstance(data, dict) or not isinstance(data.get("backups"), list):
                    raise IntegrityError(f"{self._where(CATALOG_KEY)} is damaged")
                where = self._where(CATALOG_KEY)
                backups = tuple([record_from_json(item, where) for item in data["backups"]])
                pending = tuple(str(i) for i in data.get("pendingDeletes", []))
        except (IntegrityError, TypeError):
            return Catalog(self.scan_manifests(), damaged="the catalog is damaged")
        return Catalog(backups, pending_deletes=pending)

    def write_catalog(
        self, backups: tuple[BackupRecord, ...], pending_deletes: tuple[str, ...] = ()
    ) -> None:
        ordered = tuple(sorted(backups, key=lambda b: (b.created_at, b.id)))
        data: dict[str, Any] = {"backups": [record_to_json(b.summary()) for b in ordered]}
        if pending_deletes:
            data["pendingDeletes"] = sorted(pending_deletes)
        # The head goes first, in the same object: one line a plan can read
        # alone, never out of step with the records. The whole stays one JSON
        # object ({"head": ..., "backups": ...}).
        head = head_line(summarize(ordered, pending_deletes))
        # As write_atomic, with a failpoint while the new catalog is written but
        # not yet in place.
        with self.storage.open_write(CATALOG_KEY) as out:
            out.write(head + dumps(data)[1:])
            failpoint("catalog-write")

    def read_catalog_head(self) -> CatalogHead | None:
        """The catalog's head, reading only its first line; None when there is no
        catalog, or it has no head (written by an older version) or a damaged one."""
        where = self._where(CATALOG_KEY)
        line = b""
        try:
            with self.storage.open_read(CATALOG_KEY) as stream:
                while b"\n" not in line and len(line) < MAX_HEAD_BYTES:
                    chunk = stream.read(HEAD_READ_SIZE)
                    if not chunk:
                        break
                    line += chunk
        except ObjectNotFoundError:
            return None
        try:
            return parse_head_line(line.split(b"\n", 1)[0], where)
        except IntegrityError:
            return None  # the full read says what is wrong and repairs it

    def backup_ids_on_storage(self) -> list[str]:
        return [e.name for e in self.storage.list_dir(BACKUPS_DIR) if e.is_dir]

    def scan_manifests(self) -> tuple[BackupRecord, ...]:
        """Every committed backup, read from its manifest (a full listing: slow, thorough).

        A damaged manifest is reported as a Corrupt backup rather than hidden."""
        found: list[BackupRecord] = []
        for backup_id in self.backup_ids_on_storage():
            try:
                found.append(self.read_manifest(backup_id))
            except ObjectNotFoundError:
                continue  # uncommitted: staging cleanup removes it
            except IntegrityError:
                continue
        return tuple(sorted(found, key=lambda b: (b.created_at, b.id)))

    # ------------------------------------------------------------- manifests

    def read_manifest(self, backup_id: str) -> BackupRecord:
        """Raises ObjectNotFoundError (not committed) or IntegrityError (damaged)."""
        key = manifest_key(backup_id)
        record = record_from_json(loads(self.storage.read(key), self._where(key)), self._where(key))
        if record.id != backup_id:
            raise IntegrityError(f"{self._where(key)} is damaged: it names backup {record.id}")
        return record

    def has_manifest(self, backup_id: str) -> bool:
        return self.storage.exists(manifest_key(backup_id))

    def write_manifest(self, record: BackupRecord) -> None:
        self.storage.write_atomic(manifest_key(record.id), dumps(record_to_json(record)))


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a catalog is parsed, then
    exempt what exists from it (``gc.freeze``).

    Parsing allocates hundreds of thousands of objects that all stay alive and
    form no cycles; meanwhile the collector would run over and over, each
    full pass walking every object made so far (a third of the parse time
    with 10,000 backups), and afterwards it would walk them all again, three
    times, as they age. Frozen objects are still freed when no longer used;
    only cycles among them wait for ``gc.unfreeze``, which a long-running
    caller (the daemon, after every reconcile) calls."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def is_uncommitted(record: BackupRecord) -> bool:
    return record.status is BackupStatus.RUNNING


def read_json_object(storage: Storage, key: str) -> dict[str, Any] | None:
    """A small JSON object, None when absent; raises StorageError when unreadable."""
    try:
        raw = storage.read(key)
    except ObjectNotFoundError:
        return None
    data = loads(raw, key)
    if not isinstance(data, dict):
        raise StorageError(f"{key} is not a JSON object")
    return data


__all__ = ["MANIFEST_NAME", "Catalog", "Repository"]
