"""What a repository holds, read straight from its folder, and the invariants it must keep.

The crash and concurrency tests kill or race real ``backupctl`` processes and
then judge the repository by these checks, which read the files themselves
(decrypting every object with the demo private key) rather than trusting the
code under test to report on itself."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

from reconciler.backup.opening import keys_for
from reconciler.crypto.keyring import KeyRing
from reconciler.crypto.keys import PrivateKey, load_private_key
from reconciler.repository.keyfiles import unwrap_index_key
from reconciler.repository.layout import RECLAIM_DUE
from reconciler.repository.records import BackupRecord, BackupStatus
from reconciler.repository.store import Repository
from reconciler.storage.base import TEMP_MARKER
from reconciler.storage.local import LocalStorage
from reconciler.streams import CHUNK_SIZE


@dataclass(frozen=True)
class RepositoryState:
    catalog: dict[str, str]
    """Backup id -> status, as catalog.json lists them."""
    pending_deletes: tuple[str, ...]
    manifests: dict[str, BackupRecord]
    """Committed backups: every backup folder holding a readable manifest."""
    folders: frozenset[str]
    leftovers: tuple[str, ...]
    """Temporary objects, lock claims and the lock itself: nothing of these once settled."""

    @property
    def succeeded(self) -> set[str]:
        return {i for i, status in self.catalog.items() if status == "Succeeded"}


def read_state(repository: Path) -> RepositoryState:
    raw = json.loads((repository / "catalog.json").read_text())
    catalog = {b["id"]: b["status"] for b in raw["backups"]}
    store = Repository(LocalStorage(repository), repository.name)
    backups = repository / "backups"  # made with the first backup
    folders = (
        frozenset(p.name for p in backups.iterdir() if p.is_dir())
        if backups.exists()
        else frozenset()
    )
    manifests = {
        i: store.read_manifest(i)
        for i in folders
        if (repository / "backups" / i / "manifest.json").exists()
    }
    leftovers = [str(p.relative_to(repository)) for p in repository.rglob(f"*{TEMP_MARKER}*")]
    # The lock, and claims of takeovers (their folder may stay, empty).
    leftovers += [str(p.relative_to(repository)) for p in repository.glob("lock*") if p.is_file()]
    leftovers += [str(p.relative_to(repository)) for p in repository.glob("lock-claims/*")]
    return RepositoryState(
        catalog=catalog,
        pending_deletes=tuple(raw.get("pendingDeletes", [])),
        manifests=manifests,
        folders=folders,
        leftovers=tuple(sorted(leftovers)),
    )


@functools.cache
def _private_key(path: Path) -> PrivateKey:
    return load_private_key(path, None)


def verify_objects(repository: Path, record: BackupRecord, private_key: Path) -> None:
    """Decrypt and check every source of ``record`` end to end (either format);
    raises IntegrityError."""
    stored_in = Repository(LocalStorage(repository), repository.name)
    keys = keys_for(stored_in, record, KeyRing((_private_key(private_key),)), {})
    for source in record.sources:
        if source.object is None:
            continue
        with keys.open(stored_in, record.id, source) as plain:
            while plain.read(CHUNK_SIZE):
                pass


def assert_nothing_false_is_listed(repository: Path, private_key: Path) -> RepositoryState:
    """What must hold at any moment, even right after a kill -9: every backup the
    catalog lists as Succeeded is committed, and all its objects verify."""
    state = read_state(repository)
    for backup_id in state.succeeded:
        record = state.manifests.get(backup_id)
        assert record is not None, f"{backup_id} is listed Succeeded but has no manifest"
        assert record.status is BackupStatus.SUCCEEDED, (
            f"{backup_id}: manifest says {record.status}"
        )
        verify_objects(repository, record, private_key)
    return state


def assert_settled(repository: Path, private_key: Path) -> RepositoryState:
    """What must hold after a successful apply: the catalog agrees exactly with the
    manifests, every committed backup verifies, and nothing is left over."""
    state = assert_nothing_false_is_listed(repository, private_key)
    statuses = {i: str(r.status) for i, r in state.manifests.items()}
    assert state.catalog == statuses, "the catalog disagrees with the manifests"
    assert state.folders == set(state.manifests), "a backup folder holds no manifest"
    assert not state.pending_deletes, state.pending_deletes
    assert not state.leftovers, state.leftovers
    for backup_id, record in state.manifests.items():
        if backup_id not in state.succeeded:  # those were verified above
            verify_objects(repository, record, private_key)
    return state


@dataclass(frozen=True)
class ChunkStoreState:
    """A format 2 repository's packs and index, read with the private key."""

    packs: frozenset[bytes]
    indexed_packs: frozenset[bytes]
    """Packs some visible index entry points to."""
    stale_runs: tuple[str, ...]
    """Deltas the pointer says are folded in, and shards it no longer names."""
    chunks: int


def read_chunk_store(repository: Path, private_key: Path) -> ChunkStoreState:
    store = Repository(LocalStorage(repository), repository.name)
    record = store.read_index_key()
    assert record is not None, "a format 2 repository keeps its index key record"
    ring = KeyRing((_private_key(private_key),))
    index = store.chunk_index(unwrap_index_key(record, ring, repository.name).derive())
    entries = list(index.entries())
    pointer = index.pointer
    stale = [f"deltas/{d.name}" for d in (repository / "index" / "deltas").glob("*.idx")]
    stale = [s for s in stale if s.removeprefix("deltas/") in pointer.consumed]
    shards = repository / "index" / "shards"
    if shards.exists():
        stale += [f"shards/{s.name}" for s in shards.iterdir() if s.name not in pointer.shards]
    return ChunkStoreState(
        packs=frozenset(store.pack_sizes()),
        indexed_packs=frozenset(e.pack_id for e in entries),
        stale_runs=tuple(sorted(stale)),
        chunks=len(entries),
    )


def assert_chunks_settled(repository: Path, private_key: Path) -> ChunkStoreState:
    """After a finished reclaim: every index entry points to an existing pack,
    every pack is indexed, and no folded-in delta or old shard is left."""
    state = read_chunk_store(repository, private_key)
    missing = state.indexed_packs - state.packs
    assert not missing, f"the index points to {len(missing)} missing packs"
    unindexed = state.packs - state.indexed_packs
    assert not unindexed, f"{len(unindexed)} packs nothing indexes are left"
    assert not state.stale_runs, state.stale_runs
    assert not (repository / RECLAIM_DUE).exists(), "the reclaim is still marked as owed"
    return state
