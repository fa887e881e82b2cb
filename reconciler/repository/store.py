"""The repository: one folder (``<location>/<name>/``) on a Storage, and every
rule about what it holds.

Callers ask it to begin, commit or abandon a backup, prune, clean up what an
interrupted run left, repair the catalog, record verdicts and re-wrapped keys;
none of them knows a storage key or the catalog's layout.

Commit protocol of a backup (what makes it exist, and what an interruption leaves):

1. ``begin_backup``: the catalog gets a Running entry for the new id;
2. each source becomes one object ``backups/<id>/<object name>``;
3. ``commit_backup`` writes the manifest atomically: from this moment the
   backup exists; then the catalog entry is replaced by the final record.

A crash before 3 leaves a Running entry and a folder without manifest, which
the next reconcile removes (``staging.cleanup``); a crash between the manifest
and the catalog leaves a committed backup that cleanup re-enters in the catalog.

Pruning is two-step for the same reason: the backups leave the catalog first
(remembered as pending deletions), then their data goes, then the pending list
is cleared. An interruption leaves work for cleanup, never a listed backup
whose data is half gone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from reconciler.dedup.index import IndexEntry
from reconciler.dedup.keys import DerivedKeys
from reconciler.dedup.pack import PackEntry
from reconciler.errors import IntegrityError, ObjectNotFoundError, StorageError
from reconciler.failpoints import failpoint
from reconciler.repository.catalog import (
    Catalog,
    CatalogDamaged,
    CatalogMissing,
    read_catalog,
    read_catalog_head,
    write_catalog,
)
from reconciler.repository.catalog_head import CatalogHead, ids_digest
from reconciler.repository.chunkstore import (
    ChunkIndex,
    ChunkWriter,
    ReclaimReport,
    check_pack,
    new_run_name,
    pack_key,
    pack_sizes,
    reclaim,
)
from reconciler.repository.fenced import FencedStorage
from reconciler.repository.keyfiles import (
    DataKeyRecord,
    IndexKeyRecord,
    data_key_from_json,
    data_key_to_json,
    index_key_from_json,
    index_key_to_json,
)
from reconciler.repository.layout import (
    BACKUPS_DIR,
    CATALOG_KEY,
    CHUNK_LIST_SUFFIX,
    DATA_KEYS_DIR,
    FORMAT_KEY,
    INDEX_KEY_KEY,
    LOCK_KEY,
    RECLAIM_DUE,
    SETTINGS_KEY,
    backup_dir,
    data_key_key,
    is_temporary,
    manifest_key,
    object_key,
)
from reconciler.repository.lock import DEFAULT_TTL, LockHolder, RepositoryLock, read_lock
from reconciler.repository.objects import BackupObject
from reconciler.repository.probe import probe_write_access
from reconciler.repository.records import (
    FORMAT_NAME,
    FORMAT_VERSION,
    READABLE_FORMATS,
    AppliedSettings,
    BackupRecord,
    dumps,
    loads,
    record_from_json,
    record_to_json,
    settings_from_json,
    settings_to_json,
)
from reconciler.repository.survey import CleanupItem, DriftItem, Survey, survey
from reconciler.repository.verdicts import Verdict, with_verdict
from reconciler.storage.base import Storage
from reconciler.timeutil import format_time


class Repository:
    """One repository folder (``<location>/<name>/``) on a Storage."""

    def __init__(self, storage: Storage, name: str) -> None:
        self.storage = storage
        self.name = name
        self._marker: dict[str, Any] | None = None

    @property
    def description(self) -> str:
        return f"repository {self.name} in {self.storage.description}"

    def _where(self, key: str) -> str:
        return f"{key} in {self.description}"

    # ------------------------------------------------------------- existence

    def exists(self) -> bool:
        """True when the location is there and holds an initialized repository.

        Raises IntegrityError for a damaged format marker or a newer format."""
        return self.storage.root_exists() and self.is_initialized()

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
        if version not in READABLE_FORMATS:
            raise IntegrityError(
                f"{self.description} uses repository format {version}, but this backupctl"
                f" reads formats {' and '.join(map(str, READABLE_FORMATS))}; upgrade backupctl"
            )
        self._marker = data
        return True

    @property
    def format_version(self) -> int:
        """1 (a whole object per source) or 2 (deduplicated chunks in packs).

        Raises IntegrityError when the repository has no valid format marker."""
        if self._marker is None and not self.is_initialized():
            raise IntegrityError(f"{self.description} is not initialized")
        assert self._marker is not None
        version: int = self._marker["version"]
        return version

    def initialize(
        self, settings: AppliedSettings, now: datetime, index_key: IndexKeyRecord | None = None
    ) -> None:
        """Create the repository (or finish an interrupted creation) with ``settings``.

        With ``index_key`` it deduplicates (format 2), else it stores a whole
        object per source (format 1: what tests of old repositories make).
        The storage must accept a write, a read back and a delete first. The
        format marker is written last: until it exists the repository does
        not, and an interrupted init is simply done again."""
        self.storage.ensure_root()
        probe_write_access(self.storage)
        self.write_settings(settings)
        existing = self.read_catalog()
        self._write_catalog(existing.backups)
        if index_key is not None:
            self.write_index_key(index_key)
        marker = {
            "format": FORMAT_NAME,
            "version": 1 if index_key is None else FORMAT_VERSION,
            "name": self.name,
            "createdAt": format_time(now),
        }
        self.storage.write_atomic(FORMAT_KEY, dumps(marker))
        self._marker = marker

    def upgrade(self, index_key: IndexKeyRecord, now: datetime) -> None:
        """Switch a format 1 repository to format 2: its index key first, then the
        marker. Its format 1 backups stay as they are (readable, until pruned)."""
        if self.format_version >= FORMAT_VERSION:
            return
        assert self._marker is not None
        if self.read_index_key() is None:
            self.write_index_key(index_key)
        failpoint("upgrade-key-written")
        marker = {**self._marker, "version": FORMAT_VERSION, "upgradedAt": format_time(now)}
        self.storage.write_atomic(FORMAT_KEY, dumps(marker))
        self._marker = marker

    # ------------------------------------------------------------- format 2 keys and chunks

    def read_index_key(self) -> IndexKeyRecord | None:
        """The index key record, None when there is none (format 1). Raises IntegrityError."""
        try:
            raw = self.storage.read(INDEX_KEY_KEY)
        except ObjectNotFoundError:
            return None
        return index_key_from_json(
            loads(raw, self._where(INDEX_KEY_KEY)), self._where(INDEX_KEY_KEY)
        )

    def write_index_key(self, record: IndexKeyRecord) -> None:
        self.storage.write_atomic(INDEX_KEY_KEY, dumps(index_key_to_json(record)))

    def write_data_key(self, record: DataKeyRecord) -> None:
        self.storage.write_atomic(data_key_key(record.key_id), dumps(data_key_to_json(record)))

    def read_data_key(self, key_id: str) -> DataKeyRecord:
        """Raises ObjectNotFoundError or IntegrityError (naming the object)."""
        key = data_key_key(key_id)
        record = data_key_from_json(
            loads(self.storage.read(key), self._where(key)), self._where(key)
        )
        if record.key_id != key_id:
            raise IntegrityError(f"{self._where(key)} is damaged: it names key {record.key_id}")
        return record

    def data_key_ids(self) -> list[str]:
        return [
            e.name.removesuffix(".json")
            for e in self.storage.list_dir(DATA_KEYS_DIR)
            if e.name.endswith(".json") and not is_temporary(e.name)
        ]

    def chunk_index(self, keys: DerivedKeys) -> ChunkIndex:
        """The chunk index as it is now (read on demand)."""
        return ChunkIndex(self.storage, self._where, keys)

    def chunk_writer(
        self,
        keys: DerivedKeys,
        backup_id: str,
        usable_keys: frozenset[bytes] | None = None,
        data_key: DataKeyRecord | None = None,
    ) -> ChunkWriter:
        """Where a run's new chunks go; ``finish`` it before committing the backup.

        ``usable_keys``: the data keys whose chunks it may reuse (None: any).
        ``data_key``: the run's data key record, written before its first pack."""
        return ChunkWriter(
            self.storage,
            self.chunk_index(keys),
            keys,
            new_run_name(backup_id),
            usable_keys,
            None if data_key is None else lambda: self.write_data_key(data_key),
        )

    def data_keys_wrapped_to(self, public_key_sha256: str) -> frozenset[bytes]:
        """The ids of the data keys wrapped to that public key (whose chunks its
        private key opens)."""
        found = set()
        for key_id in self.data_key_ids():
            try:
                record = self.read_data_key(key_id)
            except (ObjectNotFoundError, IntegrityError):
                continue  # never reused; verify reports what it breaks
            if any(w.public_key_sha256 == public_key_sha256 for w in record.wrapped):
                found.add(bytes.fromhex(key_id))
        return frozenset(found)

    def read_record(self, entry: IndexEntry) -> bytes:
        """One chunk's stored record. Raises ObjectNotFoundError when its pack is gone."""
        return self.storage.read_range(pack_key(entry.pack_id), entry.offset, entry.length)

    def check_pack(self, pack_id: bytes, keys: DerivedKeys) -> tuple[list[PackEntry], set[bytes]]:
        """A pack's entries and the chunks whose stored bytes do not match them
        (``chunkstore.check_pack``). Raises ObjectNotFoundError, IntegrityError."""
        return check_pack(self.storage, self._where, keys, pack_id)

    def pack_label(self, pack_id: bytes) -> str:
        return self._where(pack_key(pack_id))

    def pack_sizes(self) -> dict[bytes, int]:
        return pack_sizes(self.storage)

    def reclaim(self, keys: DerivedKeys, referenced: set[bytes]) -> ReclaimReport:
        """Drop the chunks no backup in ``referenced`` needs (see ``chunkstore.reclaim``)."""
        self.storage.write_atomic(RECLAIM_DUE, b"{}\n")
        report = reclaim(self.storage, self._where, keys, referenced)
        self.storage.delete(RECLAIM_DUE)
        return report

    def reclaim_due(self) -> bool:
        """Whether a prune or a reclaim was interrupted before its reclaim finished."""
        return self.format_version >= FORMAT_VERSION and self.storage.exists(RECLAIM_DUE)

    def probe_write_access(self) -> None:
        """Write, read back and delete a small object (credentials are proven before use)."""
        probe_write_access(self.storage)

    # ------------------------------------------------------------- settings and lock

    def read_settings(self) -> AppliedSettings | None:
        try:
            raw = self.storage.read(SETTINGS_KEY)
        except ObjectNotFoundError:
            return None
        return settings_from_json(loads(raw, self._where(SETTINGS_KEY)), self._where(SETTINGS_KEY))

    def write_settings(self, settings: AppliedSettings) -> None:
        self.storage.write_atomic(SETTINGS_KEY, dumps(settings_to_json(settings)))

    def read_lock(self) -> LockHolder | None:
        """Who holds the writer lock, None when nobody does."""
        return read_lock(self.storage, LOCK_KEY)

    def break_lock(self, seen: LockHolder) -> LockHolder | None:
        """Remove the lock ``seen`` (left by a dead process); return the lock's
        current holder instead, breaking nothing, when it changed hands since
        it was seen. Raises StorageError."""
        current = self.read_lock()
        if current is not None and current.nonce != seen.nonce:
            return current
        self.storage.delete(LOCK_KEY)
        return None

    def writer_lock(
        self, command: str, ttl: timedelta = DEFAULT_TTL, timeout: float = 0.0
    ) -> RepositoryLock:
        """The lock a writer holds while it changes this repository (enter it to take it)."""
        self.storage.ensure_root()
        return RepositoryLock(self.storage, self.name, command, ttl=ttl, timeout=timeout)

    def fenced(self, guard: Callable[[], None]) -> Repository:
        """This repository, written through a storage that calls ``guard`` before
        every write (``guard`` raises once the writer lost its lock)."""
        fenced = Repository(FencedStorage(self.storage, guard), self.name)
        fenced._marker = self._marker
        return fenced

    # ------------------------------------------------------------- catalog

    def read_catalog(self) -> Catalog:
        """The stored catalog, or one rebuilt from the manifests when it is missing or damaged."""
        try:
            return read_catalog(self.storage, self._where_catalog())
        except CatalogMissing:
            return Catalog(self.scan_manifests(), damaged="the catalog is missing")
        except CatalogDamaged:
            return Catalog(self.scan_manifests(), damaged="the catalog is damaged")

    def read_catalog_head(self) -> CatalogHead | None:
        """The catalog's head, reading only its first line; None when there is no
        catalog, or it has no head (written by an older version) or a damaged one."""
        return read_catalog_head(self.storage, self._where_catalog())

    def read_settled_head(self) -> CatalogHead | None:
        """The catalog's head when it shows nothing amiss: no Running backup, no
        unfinished prune, and the backup folders on the storage exactly those it
        lists. None otherwise: then only the whole catalog tells the truth.

        The head is read before the listing: a backup committed in between
        shows as a folder the head does not list."""
        head = self.read_catalog_head()
        if head is None or head.running != 0 or head.pending_deletes != 0:
            return None
        if ids_digest(self.backup_ids_on_storage()) != head.ids_sha256:
            return None
        return head

    def _where_catalog(self) -> str:
        return self._where(CATALOG_KEY)

    def _write_catalog(
        self, backups: Iterable[BackupRecord], pending_deletes: Iterable[str] = ()
    ) -> None:
        write_catalog(self.storage, tuple(backups), tuple(sorted(pending_deletes)))

    def backup_ids_on_storage(self) -> list[str]:
        return [e.name for e in self.storage.list_dir(BACKUPS_DIR) if e.is_dir]

    def scan_manifests(self) -> tuple[BackupRecord, ...]:
        """Every committed backup, read from its manifest (a full listing: slow, thorough)."""
        found: list[BackupRecord] = []
        for backup_id in self.backup_ids_on_storage():
            try:
                found.append(self.read_manifest(backup_id))
            except (ObjectNotFoundError, IntegrityError):
                continue  # uncommitted (cleanup removes it) or damaged (survey lists it)
        return tuple(sorted(found, key=lambda b: (b.created_at, b.id)))

    def survey(self, writer_alive: bool) -> Survey:
        """The committed backups, what interrupted runs left and how the catalog drifted.

        While another writer is alive its work in progress is not a leftover."""
        catalog = self.read_catalog()
        on_storage = set(self.backup_ids_on_storage())
        temporary = [] if writer_alive else self.temporary_objects()
        return survey(self, catalog, on_storage, temporary, writer_alive)

    def temporary_objects(self) -> list[str]:
        """Objects at the top of the repository that an interrupted atomic write left."""
        return [e.name for e in self.storage.list_dir("") if is_temporary(e.name)]

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

    def _write_manifest(self, record: BackupRecord) -> None:
        self.storage.write_atomic(manifest_key(record.id), dumps(record_to_json(record)))

    def chunk_lists(self, backup_id: str) -> list[BackupObject]:
        """The format 2 chunk lists in a backup's folder, whatever its manifest says."""
        return [
            self.backup_object(backup_id, e.name)
            for e in self.storage.list_dir(backup_dir(backup_id))
            if not e.is_dir and e.name.endswith(CHUNK_LIST_SUFFIX) and not is_temporary(e.name)
        ]

    def backup_object(self, backup_id: str, name: str) -> BackupObject:
        """The object ``name`` of backup ``backup_id`` (which may not exist yet)."""
        return BackupObject(self.storage, object_key(backup_id, name), name)

    # ------------------------------------------------------------- a backup's life

    def begin_backup(self, record: BackupRecord) -> PendingBackup:
        """Enter ``record`` (status Running) in the catalog; return the handle
        through which its objects are written and it is committed or abandoned."""
        catalog = self.read_catalog()
        listed = catalog.without({record.id})
        self._write_catalog((*listed, record.summary()), catalog.pending_deletes)
        return PendingBackup(self, record.id, listed, catalog.pending_deletes)

    def add_copied_backup(self, record: BackupRecord) -> None:
        """Commit a backup whose objects were copied in from another repository."""
        self._write_manifest(record)
        self._replace_in_catalog([record])

    def store_rewrapped(self, record: BackupRecord) -> None:
        """Commit a manifest whose data key was re-wrapped (the catalog: ``store_summaries``)."""
        self._write_manifest(record)

    def store_summaries(self, records: Sequence[BackupRecord]) -> None:
        """Replace the catalog entries of ``records`` that are still listed."""
        self._replace_in_catalog(records, add_missing=False)

    def _replace_in_catalog(
        self, records: Sequence[BackupRecord], add_missing: bool = True
    ) -> None:
        catalog = self.read_catalog()
        by_id = {r.id: r.summary() for r in records}
        backups = [by_id.pop(b.id, b) for b in catalog.backups]
        if add_missing:
            backups.extend(by_id.values())
        self._write_catalog(backups, catalog.pending_deletes)

    # ------------------------------------------------------------- pruning and repair

    def prune(self, backup_ids: Sequence[str]) -> None:
        """Delete the listed backups: out of the catalog first (remembered as
        pending), then their data, then the pending list is cleared."""
        doomed = set(backup_ids)
        if self.format_version >= FORMAT_VERSION:
            # Chunks only the doomed backups use are deleted by the reclaim
            # after it: until that has run, the next apply must know it is owed.
            self.storage.write_atomic(RECLAIM_DUE, b"{}\n")
        catalog = self.read_catalog()
        remaining = catalog.without(doomed)
        self._write_catalog(remaining, (*catalog.pending_deletes, *backup_ids))
        failpoint("prune-started")
        for backup_id in backup_ids:
            self._delete_backup(backup_id, failpoint_name="prune-deleting")
        self._write_catalog(remaining, catalog.pending_deletes)

    def _delete_backup(self, backup_id: str, failpoint_name: str | None = None) -> None:
        # The manifest first: a backup without one no longer exists, even if
        # deleting the rest is interrupted.
        self.storage.delete(manifest_key(backup_id))
        if failpoint_name:
            failpoint(failpoint_name)
        self.storage.delete_tree(backup_dir(backup_id))

    def clean_up(self, items: Sequence[CleanupItem]) -> None:
        """Remove what interrupted runs left, and re-enter backups committed meanwhile."""
        catalog = self.read_catalog()
        backups = {b.id: b for b in catalog.backups}
        pending = set(catalog.pending_deletes)
        for item in items:
            if item.committed is not None:
                backups[item.committed.id] = item.committed.summary()
            elif item.backup_id is not None:
                if item.backup_id not in pending and self.has_manifest(item.backup_id):
                    # Committed since the plan was made (by backups.migrate earlier in
                    # this apply): a backup with a manifest is never a leftover.
                    continue
                self._delete_backup(item.backup_id)
                backups.pop(item.backup_id, None)
                pending.discard(item.backup_id)
            elif is_temporary(item.path):
                self.storage.delete(item.path)
        failpoint("cleanup")
        self._write_catalog(backups.values(), pending)

    def repair_catalog(self, items: Sequence[DriftItem]) -> None:
        """Make the catalog list exactly the committed backups again."""
        catalog = self.read_catalog()
        backups = {b.id: b for b in catalog.backups}
        for item in items:
            if item.remove and item.backup_id is not None:
                backups.pop(item.backup_id, None)
            if item.add is not None:
                backups[item.add.id] = item.add.summary()
        self._write_catalog(backups.values(), catalog.pending_deletes)

    # ------------------------------------------------------------- verification

    def record_verdicts(self, verdicts: Sequence[Verdict], at: datetime) -> list[BackupRecord]:
        """Write each verdict into its backup's manifest and catalog entry; return those updated.

        ``verifiedAt`` becomes ``at`` and ``verificationError`` the damage found
        (or null); see ``verdicts.with_verdict`` for the status. Backups no
        longer in the catalog (pruned meanwhile) are left alone. Raises
        StorageError when writing fails."""
        catalog = self.read_catalog()
        entries = {b.id: b for b in catalog.backups}
        updated: list[BackupRecord] = []
        for verdict in verdicts:
            entry = entries.get(verdict.backup_id)
            if entry is None:
                continue
            try:
                manifest: BackupRecord | None = self.read_manifest(verdict.backup_id)
            except (ObjectNotFoundError, IntegrityError):
                manifest = None  # nothing to write into; the catalog still records it
            record = with_verdict(manifest or entry, verdict, at)
            if manifest is not None:
                self._write_manifest(record)
            entries[record.id] = record.summary()
            updated.append(record)
        if updated:
            self._write_catalog(entries.values(), catalog.pending_deletes)
        return updated


class PendingBackup:
    """A backup being made: Running in the catalog until committed or abandoned."""

    def __init__(
        self,
        repository: Repository,
        backup_id: str,
        others: tuple[BackupRecord, ...],
        pending_deletes: tuple[str, ...],
    ) -> None:
        self._repository = repository
        self.backup_id = backup_id
        self.others = others
        """The other backups the catalog listed when this one began, oldest first."""
        self._pending_deletes = pending_deletes

    def object(self, name: str) -> BackupObject:
        return self._repository.backup_object(self.backup_id, name)

    def commit(self, record: BackupRecord) -> None:
        """Make ``record`` exist: its manifest, then its final catalog entry.

        Raises StorageError. When the manifest could not be written the backup
        is abandoned; after it, the backup exists and cleanup re-enters it."""
        repository = self._repository
        try:
            failpoint("before-manifest")
            repository._write_manifest(record)
        except BaseException:
            self.abandon()
            raise
        failpoint("after-manifest")
        repository._write_catalog((*self.others, record.summary()), self._pending_deletes)

    def abandon(self) -> None:
        """Best effort: remove the uncommitted backup's objects and its Running
        entry. If the storage is gone, the entry stays and the next reconcile's
        staging.cleanup removes what is left."""
        repository = self._repository
        try:
            repository.storage.delete_tree(backup_dir(self.backup_id))
            repository._write_catalog(self.others, self._pending_deletes)
        except StorageError:
            pass


__all__ = ["Catalog", "PendingBackup", "Repository"]
