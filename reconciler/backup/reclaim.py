"""Reclaiming: deleting the chunks no kept backup references (format 2).

Which chunks are referenced is read from the chunk lists themselves (under the
index key), in every backup folder but those being pruned, so that a backup
whose manifest is damaged keeps its chunks. Runs under the writer lock, after
cleanup and prune, so no backup is being written meanwhile."""

from __future__ import annotations

from collections.abc import Iterable

from reconciler.dedup.chunk_list import read_chunk_list
from reconciler.dedup.keys import DerivedKeys
from reconciler.repository.chunkstore import ReclaimReport, plan_reclaim
from reconciler.repository.store import Repository


def referenced_chunks(
    repository: Repository, keys: DerivedKeys, excluding: Iterable[str] = ()
) -> set[bytes]:
    """The ids of every chunk a chunk list in a backup folder names, except in
    the folders of ``excluding`` (backups being pruned)."""
    skip = set(excluding) | set(repository.read_catalog().pending_deletes)
    referenced: set[bytes] = set()
    for backup_id in repository.backup_ids_on_storage():
        if backup_id in skip:
            continue
        for listed in repository.chunk_lists(backup_id):
            with listed.open_read() as raw:
                for ident, _length in read_chunk_list(listed.label, raw, keys.index_encryption_key):
                    referenced.add(ident)
    return referenced


def reclaim_unreferenced(repository: Repository, keys: DerivedKeys) -> ReclaimReport:
    """Delete every chunk no backup references; return what was freed."""
    return repository.reclaim(keys, referenced_chunks(repository, keys))


def estimate_reclaim(
    repository: Repository, keys: DerivedKeys, pruned: Iterable[str]
) -> ReclaimReport:
    """What reclaiming would free once ``pruned`` are deleted (nothing is changed)."""
    referenced = referenced_chunks(repository, keys, pruned)
    return plan_reclaim(repository.chunk_index(keys), repository.pack_sizes(), referenced)
