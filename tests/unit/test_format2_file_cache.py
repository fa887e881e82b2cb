"""The backup host's file cache in format 2 backups: unchanged files are not read.

Real trees, a real SQLite cache in the test's own BACKUPCTL_CACHE_DIR (see
tests/conftest.py), and the kernel's word on which files were read: inotify
reports each read() of a watched folder's files (IN_ACCESS), so "not read"
is observed, not inferred from a counter in our own code."""

from __future__ import annotations

import ctypes
import logging
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from reconciler.backup.chunked import chunk_ids
from reconciler.backup.reclaim import reclaim_unreferenced
from reconciler.reconcile.apply import index_keys
from reconciler.repository.records import BackupRecord
from tests.unit.test_format2_repository import Site, assert_same_tree

_IN_ACCESS = 0x1
_IN_ISDIR = 0x40000000
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then the name


@contextmanager
def reads_in(folder: Path) -> Iterator[set[str]]:
    """The names of the files in ``folder`` read (``read``) while the block runs."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    assert fd >= 0, os.strerror(ctypes.get_errno())
    names: set[str] = set()
    try:
        assert libc.inotify_add_watch(fd, os.fsencode(folder), _IN_ACCESS) >= 0
        yield names
        while True:
            try:
                data = os.read(fd, 1 << 16)
            except BlockingIOError:
                break
            at = 0
            while at < len(data):
                _wd, mask, _cookie, size = _EVENT.unpack_from(data, at)
                at += _EVENT.size
                name = data[at : at + size].rstrip(b"\0").decode()
                at += size
                if name and not mask & _IN_ISDIR:  # not a folder's listing
                    names.add(name)
    finally:
        os.close(fd)


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path)


def tree(site: Site) -> Path:
    return site.root / "stamp" / "deployment"


LARGE = {"big.bin", "log.txt"}  # the tree's files of at least LARGE_FILE bytes


def listed(site: Site, record: BackupRecord) -> list[tuple[bytes, int]]:
    """The files source's chunk list: (id, length) of each chunk, in order."""
    (result,) = [s for s in record.sources if s.name == "deployment-inputs"]
    assert result.object is not None
    stored = site.repository.backup_object(record.id, result.object.name)
    return list(chunk_ids(stored, result.object, index_keys(site.repository, site.config)))


def added(record: BackupRecord) -> int:
    return sum(s.added_bytes or 0 for s in record.sources)


def test_an_unchanged_large_file_is_not_read_and_restores_byte_for_byte(
    site: Site, tmp_path: Path
) -> None:
    with reads_in(tree(site)) as first_reads:
        first = site.backup()
    assert first_reads == LARGE
    with reads_in(tree(site)) as second_reads:
        second = site.backup(days=1)
    assert second_reads == set()
    assert listed(site, second) == listed(site, first)
    assert added(second) == 0 and second.size_bytes == first.size_bytes
    out = site.restore(second, tmp_path / "out")
    assert_same_tree(tree(site), out / "deployment-inputs")
    # The cache a hit leaves still knows the file: a third backup reads nothing either.
    with reads_in(tree(site)) as third_reads:
        site.backup(days=2)
    assert third_reads == set()


@pytest.mark.parametrize("change", ["mtime", "size", "same size and mtime"])
def test_a_changed_file_is_read(site: Site, tmp_path: Path, change: str) -> None:
    site.backup()
    log = tree(site) / "log.txt"
    before = log.stat()
    if change == "mtime":
        os.utime(log, ns=(before.st_atime_ns, before.st_mtime_ns + 1))
    elif change == "size":
        with log.open("ab") as f:
            f.write(b"one more line\n")
    else:  # new content, mtime put back: only ctime tells
        data = bytearray(log.read_bytes())
        data[:4] = b"LINE"
        log.write_bytes(data)
        os.utime(log, ns=(before.st_atime_ns, before.st_mtime_ns))
    with reads_in(tree(site)) as reads:
        record = site.backup(days=1)
    assert reads == {"log.txt"}
    out = site.restore(record, tmp_path / "out")
    assert (out / "deployment-inputs" / "log.txt").read_bytes() == log.read_bytes()
    # Read after a skipped file (big.bin), it was remembered at its true offsets.
    with reads_in(tree(site)) as reads:
        site.backup(days=2)
    assert reads == set()


def test_a_fresh_cache_gives_the_same_chunk_list_and_adds_nothing(
    site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = site.backup()
    cached = site.backup(days=1)
    monkeypatch.setenv("BACKUPCTL_CACHE_DIR", str(tmp_path / "fresh"))
    with reads_in(tree(site)) as reads:
        fresh = site.backup(days=2)
    assert reads == LARGE
    assert listed(site, fresh) == listed(site, cached) == listed(site, first)
    assert added(cached) == added(fresh) == 0


@pytest.mark.parametrize("damage", ["garbage", "truncated", "flipped"])
def test_a_damaged_cache_is_ignored_with_a_warning_and_changes_nothing(
    site: Site, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    first = site.backup()
    (cache,) = Path(os.environ["BACKUPCTL_CACHE_DIR"]).glob("*.cache")
    data = bytearray(cache.read_bytes())
    if damage == "garbage":
        data = bytearray(b"not a cache\n" * 100)
    elif damage == "truncated":
        del data[100:]
    else:  # one bit of a chunk id a row holds
        at = next(data.find(i) for i, _n in listed(site, first) if data.find(i) >= 0)
        data[at + 5] ^= 0x01
    cache.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING), reads_in(tree(site)) as reads:
        second = site.backup(days=1)
    assert "is damaged or was written with another index key" in caplog.text
    assert reads == LARGE
    assert listed(site, second) == listed(site, first) and added(second) == 0
    # The run wrote a good cache again.
    with reads_in(tree(site)) as reads:
        site.backup(days=2)
    assert reads == set()


def test_a_cached_chunk_that_was_reclaimed_makes_a_miss_not_a_broken_backup(
    site: Site, tmp_path: Path
) -> None:
    first = site.backup()
    site.repository.prune([first.id])
    reclaim_unreferenced(site.repository, index_keys(site.repository, site.config))
    with reads_in(tree(site)) as reads:
        second = site.backup(days=1)
    assert reads == LARGE
    assert added(second) > 700_000  # big.bin's random bytes were stored again
    out = site.restore(second, tmp_path / "out")
    assert_same_tree(tree(site), out / "deployment-inputs")


def test_a_cache_folder_that_cannot_be_written_costs_reading_not_the_backup(
    site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the cache folder's parent should be\n")
    monkeypatch.setenv("BACKUPCTL_CACHE_DIR", str(blocker / "cache"))
    with caplog.at_level(logging.WARNING):
        first = site.backup()
        with reads_in(tree(site)) as reads:
            second = site.backup(days=1)
    assert "cannot be written" in caplog.text
    assert reads == LARGE
    assert listed(site, second) == listed(site, first) and added(second) == 0
    out = site.restore(second, tmp_path / "out")
    assert_same_tree(tree(site), out / "deployment-inputs")
