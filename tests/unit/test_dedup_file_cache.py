"""The backup host's file cache (reconciler.dedup.file_cache)."""

from __future__ import annotations

import dataclasses
import logging
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.dedup.file_cache import CachedChunk, FileCache, FileKey, cache_dir
from reconciler.dedup.keys import IndexKey

KEY = IndexKey(bytes(range(32)))
OTHER_KEY = IndexKey(bytes(range(1, 33)))
REPO = "smb://nas/backups"
CHUNKS = (CachedChunk(b"\x01" * 32, 1 << 20), CachedChunk(b"\x02" * 32, 300_000))
FILE = FileKey("photos", b"2026/beach.jpg", 1_348_576, 1_700_000_000_123_456_789, 17, 42, 2049)


def write_cache(folder: Path, entries: dict[FileKey, tuple[CachedChunk, ...]]) -> Path:
    with FileCache(folder, KEY, REPO) as cache:
        for key, chunks in entries.items():
            cache.remember(key, chunks)
        cache.commit()
    return cache.path


def lookup(folder: Path, key: FileKey, index_key: IndexKey = KEY) -> tuple[CachedChunk, ...] | None:
    with FileCache(folder, index_key, REPO) as cache:
        return cache.lookup(key)


def test_an_unchanged_file_is_found_with_its_chunks_in_order(tmp_path: Path) -> None:
    write_cache(tmp_path, {FILE: CHUNKS})
    assert lookup(tmp_path, FILE) == CHUNKS


def test_an_empty_file_is_a_hit_with_no_chunks(tmp_path: Path) -> None:
    empty = dataclasses.replace(FILE, size=0)
    write_cache(tmp_path, {empty: ()})
    assert lookup(tmp_path, empty) == ()


@pytest.mark.parametrize(
    "change",
    [
        {"size": FILE.size + 1},
        {"mtime_ns": FILE.mtime_ns + 1},
        {"ctime_ns": FILE.ctime_ns + 1},
        {"inode": FILE.inode + 1},
        {"device": FILE.device + 1},
        {"path": b"2026/other.jpg"},
        {"source": "documents"},
    ],
)
def test_any_change_to_the_files_stat_or_place_is_a_miss(
    tmp_path: Path, change: dict[str, object]
) -> None:
    write_cache(tmp_path, {FILE: CHUNKS})
    assert lookup(tmp_path, dataclasses.replace(FILE, **change)) is None  # type: ignore[arg-type]


def test_inode_and_device_numbers_above_63_bits_are_kept(tmp_path: Path) -> None:
    big = dataclasses.replace(FILE, inode=(1 << 64) - 5, device=1 << 63)
    write_cache(tmp_path, {big: CHUNKS})
    assert lookup(tmp_path, big) == CHUNKS
    assert lookup(tmp_path, dataclasses.replace(big, inode=(1 << 64) - 6)) is None


def test_from_stat_takes_size_times_inode_and_device(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"12345")
    st = target.stat()
    key = FileKey.from_stat("s", b"f", st)
    assert (key.size, key.mtime_ns, key.ctime_ns, key.inode, key.device) == (
        5,
        st.st_mtime_ns,
        st.st_ctime_ns,
        st.st_ino,
        st.st_dev,
    )


def test_a_new_run_keeps_only_the_files_it_remembered(tmp_path: Path) -> None:
    gone = dataclasses.replace(FILE, path=b"deleted.jpg")
    write_cache(tmp_path, {FILE: CHUNKS, gone: CHUNKS})
    write_cache(tmp_path, {FILE: CHUNKS})
    assert lookup(tmp_path, FILE) == CHUNKS
    assert lookup(tmp_path, gone) is None


def test_a_run_that_does_not_commit_leaves_the_old_cache_and_no_temporary_file(
    tmp_path: Path,
) -> None:
    write_cache(tmp_path, {FILE: CHUNKS})
    with pytest.raises(RuntimeError), FileCache(tmp_path, KEY, REPO) as cache:
        cache.remember(dataclasses.replace(FILE, path=b"new"), CHUNKS)
        raise RuntimeError("the backup failed")
    assert lookup(tmp_path, FILE) == CHUNKS
    assert [p.name for p in tmp_path.iterdir()] == [cache.path.name]


def test_the_name_is_a_keyed_hash_that_reveals_nothing(tmp_path: Path) -> None:
    path = write_cache(tmp_path, {FILE: CHUNKS})
    assert "nas" not in path.name and "backups" not in path.name
    with FileCache(tmp_path, OTHER_KEY, REPO) as other, FileCache(tmp_path, KEY, "x") as x:
        assert len({path.name, other.path.name, x.path.name}) == 3


def damage(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x40
    path.write_bytes(bytes(data))


def test_a_damaged_row_is_ignored_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_cache(tmp_path, {FILE: CHUNKS})
    damage(path, path.read_bytes().index(CHUNKS[1].id))
    with caplog.at_level(logging.WARNING), FileCache(tmp_path, KEY, REPO) as cache:
        assert cache.lookup(FILE) is None
        assert cache.lookup(FILE) is None
    assert [r.getMessage() for r in caplog.records] == [
        f"The file cache {path} is damaged or was written with another index key,"
        " so it is ignored and this backup reads every file."
    ]


def test_a_row_with_a_forged_entry_is_not_trusted(tmp_path: Path) -> None:
    # Someone who can write the cache but has no index key swaps a file's chunks.
    path = write_cache(tmp_path, {FILE: CHUNKS})
    with sqlite3.connect(path) as db:
        db.execute("UPDATE files SET chunks = ?", (CHUNKS[0].id + b"\0\0\0\1",))
    db.close()
    assert lookup(tmp_path, FILE) is None


def test_a_file_that_is_not_a_cache_is_ignored_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_cache(tmp_path, {FILE: CHUNKS})
    path.write_bytes(b"not a database at all" * 100)
    with caplog.at_level(logging.WARNING):
        assert lookup(tmp_path, FILE) is None
    assert len(caplog.records) == 1 and str(path) in caplog.records[0].getMessage()
    write_cache(tmp_path, {FILE: CHUNKS})  # and the next run replaces it
    assert lookup(tmp_path, FILE) == CHUNKS


def test_a_cache_written_with_another_index_key_is_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_cache(tmp_path, {FILE: CHUNKS})
    with FileCache(tmp_path, OTHER_KEY, REPO) as other:
        other_path = other.path
    assert lookup(tmp_path, FILE, OTHER_KEY) is None  # its own name: not found
    path.rename(other_path)  # and under its name, not trusted
    with caplog.at_level(logging.WARNING):
        assert lookup(tmp_path, FILE, OTHER_KEY) is None
    assert "another index key" in caplog.records[0].getMessage()
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # said when opened, whatever is looked up
        assert lookup(tmp_path, dataclasses.replace(FILE, path=b"not-cached"), OTHER_KEY) is None
    assert len(caplog.records) == 1


def test_a_missing_folder_is_made_for_its_owner_only_and_the_cache_is_0600(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "cache" / "backupctl"
    old_umask = os.umask(0o022)
    try:
        path = write_cache(folder, {FILE: CHUNKS})
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_cache_folder_that_cannot_be_made_costs_only_time(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"")
    with caplog.at_level(logging.WARNING), FileCache(blocker / "cache", KEY, REPO) as cache:
        assert cache.lookup(FILE) is None
        cache.remember(FILE, CHUNKS)
        cache.commit()
    assert [r.getMessage() for r in caplog.records] == [
        f"The file cache {cache.path} cannot be written (Not a directory),"
        " so the next backup reads every file."
    ]


def test_a_commit_that_fails_costs_only_time_and_leaves_no_temporary_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING), FileCache(tmp_path, KEY, REPO) as cache:
        cache.remember(FILE, CHUNKS)
        (cache.path / "x").mkdir(parents=True)  # nothing can be renamed over it
        cache.commit()
    assert len(caplog.records) == 1 and "cannot be written" in caplog.records[0].getMessage()
    assert [p.name for p in tmp_path.iterdir()] == [cache.path.name]


def test_a_run_committing_meanwhile_does_not_disturb_a_reader_or_mix_entries(
    tmp_path: Path,
) -> None:
    a, b = dataclasses.replace(FILE, path=b"a"), dataclasses.replace(FILE, path=b"b")
    write_cache(tmp_path, {FILE: CHUNKS})
    first = FileCache(tmp_path, KEY, REPO)
    second = FileCache(tmp_path, KEY, REPO)
    first.remember(a, CHUNKS)
    second.remember(b, CHUNKS)
    first.commit()
    # While the second run is still writing, the cache is the first run's, whole.
    assert (lookup(tmp_path, a), lookup(tmp_path, b)) == (CHUNKS, None)
    assert second.lookup(FILE) == CHUNKS  # it still reads the cache it opened
    second.commit()
    assert (lookup(tmp_path, a), lookup(tmp_path, b), lookup(tmp_path, FILE)) == (
        None,
        CHUNKS,
        None,
    )


_WRITER = """
import sys
from pathlib import Path
from reconciler.dedup.file_cache import CachedChunk, FileCache, FileKey
from reconciler.dedup.keys import IndexKey
run = sys.argv[2]
for _ in range(5):
    with FileCache(Path(sys.argv[1]), IndexKey(bytes(range(32))), "smb://nas/backups") as c:
        for i in range(2000):
            key = FileKey("s", b"%s/%d" % (run.encode(), i), i, 1, 2, 3, 4)
            c.remember(key, (CachedChunk(bytes(32), i),))
        c.commit()
"""


def test_concurrent_runs_leave_one_whole_cache(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    runs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path), f"run{n}"])
        for n in range(4)
    ]
    assert [run.wait(timeout=120) for run in runs] == [0, 0, 0, 0]
    found = {}
    with caplog.at_level(logging.WARNING), FileCache(tmp_path, KEY, REPO) as cache:
        for n in range(4):
            keys = [FileKey("s", b"run%d/%d" % (n, i), i, 1, 2, 3, 4) for i in range(2000)]
            found[n] = sum(cache.lookup(key) is not None for key in keys)
    assert not caplog.records
    assert sorted(found.values()) == [0, 0, 0, 2000]  # exactly one run's, all of it
    assert len(list(tmp_path.iterdir())) == 1  # no temporary file left behind


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"BACKUPCTL_CACHE_DIR": "/c", "XDG_CACHE_HOME": "/x", "HOME": "/h"}, "/c"),
        ({"XDG_CACHE_HOME": "/x", "HOME": "/h"}, "/x/backupctl"),
        ({"XDG_CACHE_HOME": "relative", "HOME": "/h"}, "/h/.cache/backupctl"),
        ({"BACKUPCTL_CACHE_DIR": "", "HOME": "/h"}, "/h/.cache/backupctl"),
    ],
)
def test_the_cache_folder_follows_the_environment(environ: dict[str, str], expected: str) -> None:
    assert cache_dir(environ) == Path(expected)
