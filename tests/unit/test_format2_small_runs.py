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
from pathlib import Path

import pytest

from reconciler.backup.reclaim import reclaim_unreferenced
from reconciler.dedup.chunker import LARGE_FILE
from reconciler.reconcile.apply import index_keys
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
