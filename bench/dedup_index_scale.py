"""How format 2's index scales: an index of N chunks on local storage.

    .venv/bin/python -m bench.dedup_index_scale --entries 1000000 2000000

For each N: the index is written as reclaim writes it (compacted shards), then
a backup-like lookup of 100,000 random ids (half stored, half not) runs in a
fresh process view of the index (shards loaded on first use), and a reclaim
that keeps every entry runs once. Printed: shard count and bytes, the time of
the lookups and of the reclaim, and the peak RSS of each step (ru_maxrss of
this process, so a later step shows at least an earlier one's)."""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

from reconciler.dedup.index import IndexEntry
from reconciler.dedup.keys import IndexKey
from reconciler.repository.chunkstore import ChunkIndex, _switch_index, reclaim
from reconciler.repository.layout import SHARDS_DIR
from reconciler.storage.local import LocalStorage

LOOKUPS = 100_000


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(entries: int, folder: Path) -> None:
    keys = IndexKey.generate().derive()
    storage = LocalStorage(folder / f"repo-{entries}")
    storage.ensure_root()
    pack = os.urandom(16)
    key_id = os.urandom(16)
    ids = [os.urandom(32) for _ in range(entries)]
    started = time.perf_counter()
    _switch_index(
        storage,
        ChunkIndex(storage, str, keys),
        keys,
        [IndexEntry(i, pack, 64 + n, 100, key_id) for n, i in enumerate(ids)],
    )
    written = time.perf_counter() - started
    shards = storage.list_dir(SHARDS_DIR)
    size = sum(storage.size(f"{SHARDS_DIR}/{s.name}") for s in shards)
    probes = [ids[n] for n in range(0, entries, max(1, entries // (LOOKUPS // 2)))][: LOOKUPS // 2]
    probes += [os.urandom(32) for _ in range(LOOKUPS - len(probes))]
    index = ChunkIndex(storage, str, keys)
    started = time.perf_counter()
    found = sum(1 for p in probes if index.lookup(p) is not None)
    looked = time.perf_counter() - started
    print(
        f"{entries:>11,} entries: {len(shards):>5} shards, {size / 1e6:8.1f} MB;"
        f" written in {written:6.2f} s; {LOOKUPS:,} lookups ({found:,} found)"
        f" in {looked:5.2f} s ({looked / LOOKUPS * 1e6:.1f} us each, shards loaded as"
        f" needed); peak RSS {_rss_mib():,.0f} MiB",
        flush=True,
    )
    del index
    # A reclaim keeping everything (no pack on the storage: every entry's pack is
    # missing, so this times reading and judging the index, then rewriting none).
    started = time.perf_counter()
    reclaim(storage, str, keys, set(ids))
    print(
        f"{'':>11}  reclaim over the whole index: {time.perf_counter() - started:5.2f} s;"
        f" peak RSS {_rss_mib():,.0f} MiB",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="backupctl-index-scale-", dir=args.scratch))
    try:
        for entries in args.entries:
            measure(entries, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
