"""Runs of unchanged small files are not read: the file cache lists their chunks.

A run is a folder's entry and the small files and links after it, up to the
next folder or large file. These tests hold a backup that skips runs to what
reading gives: its chunk list is compared with a backup of the same tree
from an empty cache (which reads everything), and restores are compared with
the tree. Which files were read is the kernel's word (inotify, see
test_format2_file_cache)."""

from __future__ import annotations

import logging
import os
import random
import sqlite3
import tarfile
from pathlib import Path
from typing import Any, cast

import pytest

from reconciler.backup.cached_files import CachedFiles, SourceCache
from reconciler.backup.reclaim import reclaim_unreferenced
from reconciler.dedup.boundaries import RunStart, SmallRun
from reconciler.dedup.chunker import LARGE_FILE
from reconciler.dedup.file_cache import CachedChunk, FileCache
from reconciler.dedup.keys import IndexKey
from reconciler.reconcile.apply import index_keys
from reconciler.repository.chunkstore import ChunkWriter
from reconciler.sources.tar_writer import TarWriter, describe
from tests.unit.test_format2_file_cache import added, listed, reads_in, tree
from tests.unit.test_format2_repository import Site, assert_same_tree


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path)


def small(site: Site) -> Path:
    return tree(site) / "small"


SMALL_NAMES = {f"doc-{n:02}.json" for n in range(40)}


def from_empty_cache(site: Site, folder: Path, days: float) -> list[tuple[bytes, int]]:
    """The chunk list of a backup that reads everything (a fresh host)."""
    before = os.environ["BACKUPCTL_CACHE_DIR"]
    os.environ["BACKUPCTL_CACHE_DIR"] = str(folder)
    try:
        return listed(site, site.backup(days=days))
    finally:
        os.environ["BACKUPCTL_CACHE_DIR"] = before


def test_unchanged_small_files_are_not_opened_and_restore_byte_for_byte(
    site: Site, tmp_path: Path
) -> None:
    with reads_in(small(site)) as first_reads:
        first = site.backup()
    assert first_reads == SMALL_NAMES
    with reads_in(small(site)) as second_reads, reads_in(tree(site)) as top_reads:
        second = site.backup(days=1)
    assert second_reads == set() and top_reads == set()
    assert listed(site, second) == listed(site, first)
    assert added(second) == 0
    out = site.restore(second, tmp_path / "out")
    assert_same_tree(tree(site), out / "deployment-inputs")
    # The cache a hit leaves still knows the run.
    with reads_in(small(site)) as third_reads:
        site.backup(days=2)
    assert third_reads == set()
    assert from_empty_cache(site, tmp_path / "fresh", 3) == listed(site, first)


def _rewrite_same_size_and_mtime(path: Path) -> None:
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[0] ^= 0x01
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # only ctime tells


CHANGES = {
    "rewritten, same size and mtime": lambda f: _rewrite_same_size_and_mtime(f / "doc-07.json"),
    "mtime": lambda f: os.utime(f / "doc-07.json", ns=(0, 1_000_000_000)),
    "added": lambda f: (f / "doc-07b.json").write_text('{"new": 1}\n'),
    "removed": lambda f: (f / "doc-07.json").unlink(),
    "renamed": lambda f: (f / "doc-07.json").rename(f / "doc-07-renamed.json"),
    "mode": lambda f: (f / "doc-07.json").chmod(0o600),
    "link target": lambda f: ((f / "link").unlink(), (f / "link").symlink_to("doc-08.json")),
    "grown large": lambda f: (f / "doc-07.json").write_bytes(b"x" * LARGE_FILE),
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_a_change_in_a_run_reads_that_run_and_lists_what_reading_gives(
    site: Site, tmp_path: Path, change: str
) -> None:
    (small(site) / "link").symlink_to("doc-01.json")
    site.backup()
    CHANGES[change](small(site))
    with reads_in(small(site)) as reads:
        record = site.backup(days=1)
    assert reads  # the run was read again
    assert listed(site, record) == from_empty_cache(site, tmp_path / "fresh", 2)
    out = site.restore(record, tmp_path / "out")
    assert_same_tree(tree(site), out / "deployment-inputs")
    assert os.readlink(out / "deployment-inputs" / "small" / "link") == os.readlink(
        small(site) / "link"
    )
    # Read once, the changed run is remembered.
    with reads_in(small(site)) as reads:
        site.backup(days=3)
    assert reads == set()


def test_a_cached_chunk_that_was_reclaimed_makes_the_run_a_miss(site: Site, tmp_path: Path) -> None:
    first = site.backup()
    site.repository.prune([first.id])
    reclaim_unreferenced(site.repository, index_keys(site.repository, site.config))
    with reads_in(small(site)) as reads:
        second = site.backup(days=1)
    assert reads == SMALL_NAMES
    out = site.restore(second, tmp_path / "out")
    assert_same_tree(tree(site), out / "deployment-inputs")


def test_a_damaged_run_row_is_ignored_with_a_warning(
    site: Site, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = site.backup()
    (cache,) = Path(os.environ["BACKUPCTL_CACHE_DIR"]).glob("*.cache")
    with sqlite3.connect(cache) as db:
        (chunks,) = db.execute("SELECT chunks FROM runs ORDER BY size DESC LIMIT 1").fetchone()
        damaged = bytes([chunks[0] ^ 0x01]) + chunks[1:]
        db.execute("UPDATE runs SET chunks = ? WHERE chunks = ?", (damaged, chunks))
    db.close()
    with caplog.at_level(logging.WARNING), reads_in(small(site)) as reads:
        second = site.backup(days=1)
    assert "is damaged or was written with another index key" in caplog.text
    assert reads == SMALL_NAMES
    assert listed(site, second) == listed(site, first)


def _random_tree(root: Path, rng: random.Random) -> None:
    for folder in ("a", "a/b", "a/b/c", "d", "e"):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for n in range(rng.randint(0, 12)):
            (root / folder / f"f{n:02}").write_bytes(rng.randbytes(rng.randint(0, 30_000)))
    (root / "a" / "m-large").write_bytes(rng.randbytes(LARGE_FILE + 10))
    (root / "d" / "link").symlink_to("../a/f00")


def _mutate(root: Path, rng: random.Random, day: int) -> None:
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())
    folders = sorted(p for p in root.rglob("*") if p.is_dir())
    for _ in range(rng.randint(1, 3)):
        kind = rng.randrange(7)
        if kind == 0 and files:
            target = rng.choice(files)
            if target.exists():
                target.write_bytes(rng.randbytes(rng.randint(0, 30_000)))
        elif kind == 1:
            (rng.choice(folders) / f"new-{day}-{rng.randrange(1000)}").write_bytes(b"n" * day)
        elif kind == 2 and files:
            rng.choice(files).unlink(missing_ok=True)
        elif kind == 3 and files:
            source = rng.choice(files)
            if source.exists():
                source.rename(rng.choice(folders) / f"moved-{day}-{rng.randrange(1000)}")
        elif kind == 4:
            (rng.choice(folders) / f"sub-{day}").mkdir(exist_ok=True)
        elif kind == 5 and files:
            target = rng.choice(files)
            if target.exists():
                target.chmod(rng.choice((0o600, 0o644, 0o640)))
        elif kind == 6 and files:
            target = rng.choice(files)
            if target.exists():  # a small file grown large, or a large one shrunk
                size = 100 if target.stat().st_size >= LARGE_FILE else LARGE_FILE + day
                target.write_bytes(rng.randbytes(size))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_backups_of_a_changing_tree_list_what_reading_everything_lists(
    site: Site, tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    mix = tree(site) / "mix"
    _random_tree(mix, rng)
    site.backup()
    for day in range(1, 6):
        _mutate(mix, rng, day)
        record = site.backup(days=day)
        assert listed(site, record) == from_empty_cache(site, tmp_path / f"fresh-{day}", day)
    out = site.restore(record, tmp_path / "out")
    assert_same_tree(tree(site), out / "deployment-inputs")


def _stat(
    mode: int = 0o100644, uid: int = 4242, gid: int = 4242, size: int = 3, **ns: int
) -> os.stat_result:
    mtime_ns, ctime_ns = ns.get("mtime_ns", 10**18), ns.get("ctime_ns", 10**18)
    ino, dev = ns.get("ino", 5), ns.get("dev", 1)
    seconds = (0, mtime_ns // 10**9, ctime_ns // 10**9)
    return os.stat_result(
        (mode, ino, dev, 1, uid, gid, size, *seconds, *seconds, 0, mtime_ns, ctime_ns)
    )


def _tar_and_description(
    name: bytes = b"doc.json",
    kind: bytes = b"0",
    link: bytes = b"",
    data: bytes = b"abc",
    **st: int,
) -> tuple[bytes, bytes]:
    written: list[bytes] = []

    class Sink:
        def write(self, chunk: bytes) -> int:
            written.append(bytes(chunk))
            return len(chunk)

    stat_result = _stat(size=len(data), **st)
    writer = TarWriter(Sink())
    if kind == tarfile.REGTYPE:
        writer.small_file(name, stat_result, data)
        described = describe(name, kind, stat_result, len(data))
    else:
        writer.header(name, kind, stat_result, linkname=link)
        described = describe(name, kind, stat_result, linkname=link)
    writer.close()
    return b"".join(written), described


VARIANTS: dict[str, dict[str, Any]] = {
    "name": {"name": b"other.json"},
    "long name": {"name": b"x" * 150},
    "mode": {"mode": 0o100600},
    "owner": {"uid": 4243},  # neither has a name: only the ids differ
    "group": {"gid": 4243},
    "mtime": {"mtime_ns": 10**18 + 1},
    "size": {"data": b"abcd"},
    "kind": {"kind": tarfile.DIRTYPE, "mode": 0o40755},
    "link target": {"kind": tarfile.SYMTYPE, "link": b"elsewhere", "mode": 0o120777},
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_entries_whose_tar_bytes_differ_have_different_descriptions(variant: str) -> None:
    """The file cache skips a run when descriptions are equal: so whatever
    changes an entry's tar bytes must change its description."""
    base = (
        {"kind": tarfile.SYMTYPE, "link": b"target", "mode": 0o120777}
        if variant == "link target"
        else {}
    )
    tar_a, description_a = _tar_and_description(**base)
    tar_b, description_b = _tar_and_description(**VARIANTS[variant])
    assert tar_a != tar_b
    assert description_a != description_b


@pytest.mark.parametrize("field", ["ctime_ns", "ino", "dev"])
def test_content_that_only_ctime_inode_or_device_tell_apart_has_another_description(
    field: str,
) -> None:
    tar_a, description_a = _tar_and_description()
    tar_b, description_b = _tar_and_description(**{field: 7})
    assert tar_a == tar_b  # the same header: the content may still differ
    assert description_a != description_b


def test_a_written_run_is_remembered_only_when_its_chunks_are_exactly_the_run(
    tmp_path: Path,
) -> None:
    """A run whose chunks do not add up to it (a large file's chunks inside it,
    were the walker and the boundary sink ever to disagree) is not remembered:
    its cached chunks would not be its bytes."""
    key = IndexKey(bytes(range(32)))
    chunk = CachedChunk(bytes(32), 1000)
    with FileCache(tmp_path, key, "repo") as cache:
        files = CachedFiles(SourceCache(cache, "src"), cast(ChunkWriter, None))
        files.run_chunk_read(RunStart(0), 0, chunk)
        files.run_read(SmallRun(0, 1000, b"whole"))
        files.run_chunk_read(RunStart(1000), 1000, chunk)
        files.run_read(SmallRun(1000, 3000, b"short"))
        files.run_chunk_read(RunStart(4000), 4500, chunk)
        files.run_read(SmallRun(4000, 1000, b"elsewhere"))
        cache.commit()
    with FileCache(tmp_path, key, "repo") as cache:
        assert cache.lookup_run("src", b"whole") == (1000, (chunk,))
        assert cache.lookup_run("src", b"short") is None
        assert cache.lookup_run("src", b"elsewhere") is None


def test_a_cache_of_the_format_before_runs_counts_as_empty_without_a_warning(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    """A host upgraded from a version whose cache had no runs reads its files
    once, quietly: its cache is not damaged, only older."""
    first = site.backup()
    (cache,) = Path(os.environ["BACKUPCTL_CACHE_DIR"]).glob("*.cache")
    with sqlite3.connect(cache) as db:
        db.execute("DROP TABLE runs")
        db.execute("UPDATE meta SET format = 1")
    db.close()
    with caplog.at_level(logging.WARNING), reads_in(small(site)) as reads:
        second = site.backup(days=1)
    assert caplog.text == ""
    assert reads == SMALL_NAMES
    assert listed(site, second) == listed(site, first)
