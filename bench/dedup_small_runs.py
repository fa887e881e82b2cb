"""Chunk sizes between large files, measured on the bench's data set.

    .venv/bin/python -m bench.dedup_small_runs [--scratch DIR] [--days 28]

Tars the "small" set (20,000 small JSON files, a 600 MB log, 300 MB of
random bytes; see ``bench.dataset``) with the files source's own tar writer,
through ``TarBoundarySink`` and ``ChunkFeeder``, once for all candidates (the
stream is fanned out), and for each candidate of the chunks between large
files reports:

* chunks: how many the full backup has, and how many distinct;
* stored: the zstd-3 sizes of its distinct chunks, each compressed alone as a
  pack record is, plus ``PER_CHUNK_BYTES`` for each (record nonce, tag and
  key id, trailer and index entries), plus the backup's chunk list, against
  zstd-3 of the whole stream (``tar | zstd -3``);
* the 1 % change (the issue's: 200 random small files rewritten with new
  content of similar size and a new mtime, 6 MB appended to the log): the
  stored size of the chunks the next backup adds, as % of the data set;
* with ``--days N``: N daily backups, each after such a change, keeping the
  last 7 (chunks no kept backup uses reclaimed at once, the best reclaiming
  can do): the stored size against zstd-3 of the last full stream.

The data set is generated under ``--scratch`` (kept and reused, as
``bench.run`` does); the changes go to a working copy beside it (hard links,
except the log, copied), so the generated set itself is never modified.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import shutil
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import zstandard

from bench.dataset import MB, MTIME_NS, SPECS, DatasetSpec, _document, _log_file, ensure_dataset
from reconciler.dedup.boundaries import ChunkFeeder, FileContent, RunStart, TarBoundarySink
from reconciler.dedup.chunk_id import chunk_id
from reconciler.dedup.chunker import LARGE_FILE, SMALL_RUN_PARAMS, Chunk, Chunker, ChunkParams
from reconciler.dedup.pack import ZSTD_LEVEL
from reconciler.sources.tree_walk import write_tree

KiB = 1024
PER_CHUNK_BYTES = 16 + 12 + 16 + 40 + 56
"""Stored per distinct chunk besides its compressed bytes: the record's key
id, nonce and tag, its pack trailer entry and its index entry."""
LIST_ENTRY_BYTES = 36
"""Stored per chunk of each backup: its entry in the backup's chunk list."""
CHANGED_FILES = 200
APPENDED_LOG_BYTES = 6 * MB
KEPT_BACKUPS = 7
ID_KEY = bytes(range(32))
SEED = 0x5EED_0F_1D
DAY_NS = 86_400 * 10**9


@dataclass(frozen=True)
class Candidate:
    """One way of chunking what lies between large files."""

    name: str
    between: ChunkParams
    large_file: int = LARGE_FILE
    """Files of at least this size are cut at their start and end (1: every file)."""
    runs: bool = False
    """Also cut where each run of small entries starts and ends (a folder's
    entry and the small files after it, up to the next folder or large file),
    as format 2 does so that the file cache can hold runs."""


def _sizes(average: int, minimum: int, maximum: int) -> ChunkParams:
    return ChunkParams(average * KiB, minimum * KiB, maximum * KiB)


CANDIDATES = (
    Candidate("1 MiB throughout (no small runs)", ChunkParams()),
    Candidate("avg 16K min 4K max 64K", _sizes(16, 4, 64)),
    Candidate("avg 32K min 8K max 128K", _sizes(32, 8, 128)),
    Candidate("avg 64K min 16K max 256K", _sizes(64, 16, 256)),
    Candidate("avg 64K min 16K max 256K, runs", _sizes(64, 16, 256), runs=True),
    Candidate("avg 32K min 8K max 128K, runs", _sizes(32, 8, 128), runs=True),
    Candidate("avg 128K min 32K max 512K", _sizes(128, 32, 512)),
    Candidate("one chunk per file", ChunkParams(), large_file=1),
)


@dataclass
class Backup:
    """What one candidate found in one backup."""

    ids: set[bytes] = field(default_factory=set)
    chunks: int = 0
    new_stored: int = 0  # stored bytes of its chunk list and of the chunks no kept backup had
    new_chunks: int = 0


class Measure:
    """One candidate's chunker, fed a stream; remembers chunk ids and stored sizes."""

    def __init__(self, candidate: Candidate, sizes: dict[bytes, int]) -> None:
        self.candidate = candidate
        self.sizes = sizes  # chunk id -> stored size, shared by all candidates
        self.kept: deque[set[bytes]] = deque(maxlen=KEPT_BACKUPS)
        self.lists: deque[int] = deque(maxlen=KEPT_BACKUPS)  # kept chunk lists' sizes
        self.zstd = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_content_size=True)

    def start(self) -> tuple[TarBoundarySink, ChunkFeeder, Backup]:
        backup = Backup()
        chunker = Chunker(SEED, ChunkParams(), self.candidate.between)
        feeder = ChunkFeeder(chunker, lambda chunk, file: self._add(backup, chunk, file))
        return TarBoundarySink(feeder, self.candidate.large_file), feeder, backup

    def _add(self, backup: Backup, chunk: Chunk, file: FileContent | RunStart | None) -> None:
        ident = chunk_id(ID_KEY, chunk.data)
        backup.chunks += 1
        backup.new_stored += LIST_ENTRY_BYTES
        if ident in backup.ids:
            return
        backup.ids.add(ident)
        size = self.sizes.get(ident)
        if size is None:
            size = self.sizes[ident] = len(self.zstd.compress(chunk.data)) + PER_CHUNK_BYTES
        if not any(ident in earlier for earlier in self.kept):
            backup.new_stored += size
            backup.new_chunks += 1

    def keep(self, backup: Backup) -> int:
        """Keep ``backup`` (dropping the oldest beyond ``KEPT_BACKUPS``); the stored size."""
        self.kept.append(backup.ids)
        self.lists.append(backup.chunks * LIST_ENTRY_BYTES)
        return sum(self.sizes[i] for i in set().union(*self.kept)) + sum(self.lists)


class FanOut:
    """A ByteSink writing to several, and to zstd-3 of the whole stream; the
    tree walker's ``KnownFiles`` too, knowing nothing but telling the sinks of
    candidates that cut at runs where runs start and end."""

    min_size = LARGE_FILE
    looks_up_runs = False

    def __init__(self, sinks: list[TarBoundarySink], runs: list[TarBoundarySink]) -> None:
        self.sinks = sinks
        self.runs = runs
        self.raw = 0
        self.compressed = 0
        self._zstd = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compressobj()

    def write(self, data: bytes, /) -> None:
        self.raw += len(data)
        self.compressed += len(self._zstd.compress(data))
        for sink in self.sinks:
            sink.write(data)

    def known(self, name: bytes, st: object, /) -> bool:
        return False

    def skip(self, size: int, /) -> None:
        raise AssertionError("nothing is known")

    def run_starts(self) -> None:
        for sink in self.runs:
            sink.run_starts()

    def known_run(self, entries: bytes, /) -> int | None:
        return None

    def skip_run(self, size: int, /) -> None:
        raise AssertionError("nothing is known")

    def run_ends(self, entries: bytes, /) -> None:
        for sink in self.runs:
            sink.run_ends(entries)

    def close(self) -> None:
        self.compressed += len(self._zstd.flush())
        for sink in self.sinks:
            sink.close()


def back_up(tree: Path, measures: list[Measure]) -> tuple[list[Backup], FanOut]:
    started = [m.start() for m in measures]
    fan = FanOut(
        [sink for sink, _, _ in started],
        [sink for (sink, _, _), m in zip(started, measures, strict=True) if m.candidate.runs],
    )
    write_tree(tree, (), fan, fan)
    fan.close()
    for _, feeder, _ in started:
        feeder.finish()
    return [backup for _, _, backup in started], fan


def working_copy(source: Path, work: Path) -> None:
    """``work``: hard links to ``source``'s files, except the log (copied: it grows)."""
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(source, work, copy_function=os.link)
    log = work / "logs" / "frontend.log"
    log.unlink()
    shutil.copy2(source / "logs" / "frontend.log", log)
    _restore_folder_mtimes(work)


def change(work: Path, spec: DatasetSpec, day: int) -> None:
    """The issue's 1 % change: 200 small files rewritten, 6 MB appended to the log."""
    rng = random.Random(spec.seed * 1000 + day)
    mtime = MTIME_NS + day * DAY_NS
    for index in rng.sample(range(spec.small_files), CHANGED_FILES):
        bucket = index // 100
        path = (
            work / "config" / f"subscription-{bucket // 10:03d}" / f"group-{bucket % 10:02d}"
        ) / f"{index:05d}.json"
        old = path.stat().st_size
        data = min((_document(rng, index) for _ in range(8)), key=lambda d: abs(len(d) - old))
        fresh = path.with_suffix(".new")
        fresh.write_bytes(data)  # a new inode: the generated set keeps the old one
        os.utime(fresh, ns=(mtime, mtime))
        fresh.replace(path)
    scratch = work.parent / f"append-{day}"
    shutil.rmtree(scratch, ignore_errors=True)
    appended = scratch / "x" / "more.log"
    _log_file(
        appended, dataclasses.replace(spec, seed=spec.seed + day, log_bytes=APPENDED_LOG_BYTES)
    )
    log = work / "logs" / "frontend.log"
    with log.open("ab") as out:
        out.write(appended.read_bytes())
    shutil.rmtree(scratch)
    os.utime(log, ns=(mtime, mtime))
    _restore_folder_mtimes(work)


def _restore_folder_mtimes(tree: Path) -> None:
    # Rewriting a file in place leaves its folder's mtime alone; replacing it does not.
    for dirpath, _, _ in os.walk(tree, topdown=False):
        os.utime(dirpath, ns=(MTIME_NS, MTIME_NS))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scratch",
        type=Path,
        default=Path(os.environ.get("BACKUPCTL_BENCH_DIR", "/var/tmp/backupctl-bench")),
    )
    parser.add_argument("--days", type=int, default=1, help="daily changed backups (default 1)")
    parser.add_argument("--size", choices=sorted(SPECS), default="small")
    args = parser.parse_args()
    spec = SPECS[args.size]
    dataset = ensure_dataset(spec, args.scratch)
    work = args.scratch / f"work-{spec.name}"
    working_copy(dataset.root / "data", work)
    sizes: dict[bytes, int] = {}
    measures = [Measure(c, sizes) for c in CANDIDATES]
    print(f"data set: {spec.description}, {dataset.total_bytes / MB:,.0f} MB")
    print(f"format's sizes between large files: {SMALL_RUN_PARAMS}\n")

    begun = time.perf_counter()
    full, fan = back_up(work, measures)
    print(
        f"full backup: tar stream {fan.raw / MB:,.0f} MB, zstd-3 of the stream"
        f" {fan.compressed / MB:,.1f} MB ({time.perf_counter() - begun:.0f} s)"
    )
    print(f"{'candidate':34} {'chunks':>8} {'distinct':>8} {'stored MB':>9} {'x zstd':>7}")
    for m, backup in zip(measures, full, strict=True):
        stored = m.keep(backup)
        print(
            f"{m.candidate.name:34} {backup.chunks:8,} {len(backup.ids):8,}"
            f" {stored / MB:9,.1f} {stored / fan.compressed:7.3f}"
        )

    added: list[list[float]] = [[] for _ in measures]
    stored_now = [0] * len(measures)
    for day in range(1, args.days + 1):
        change(work, spec, day)
        backups, fan = back_up(work, measures)
        for i, (m, backup) in enumerate(zip(measures, backups, strict=True)):
            added[i].append(backup.new_stored / dataset.total_bytes * 100)
            stored_now[i] = m.keep(backup)
        if day == 1 or day == args.days:
            print(
                f"\nafter day {day}'s change (zstd-3 of the stream: {fan.compressed / MB:,.1f} MB)"
            )
            print(
                f"{'candidate':34} {'new chunks':>10} {'added MB':>9} {'% of set':>8}"
                f" {'kept MB':>8} {'x zstd':>7}"
            )
            for i, (m, backup) in enumerate(zip(measures, backups, strict=True)):
                print(
                    f"{m.candidate.name:34} {backup.new_chunks:10,}"
                    f" {backup.new_stored / MB:9,.2f} {added[i][-1]:8.2f}"
                    f" {stored_now[i] / MB:8,.1f} {stored_now[i] / fan.compressed:7.3f}"
                )
    if args.days > 1:
        print(f"\nmean added per day over {args.days} days (% of the data set):")
        for m, values in zip(measures, added, strict=True):
            print(f"  {m.candidate.name:34} {sum(values) / len(values):.2f}")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
