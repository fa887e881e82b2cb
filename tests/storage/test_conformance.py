"""One behaviour suite for every storage backend (see conftest for the list)."""

from __future__ import annotations

import hashlib
import itertools
import multiprocessing
import os
import sys
import threading
from collections.abc import Callable

import pytest

from reconciler.errors import (
    IntegrityError,
    ObjectExistsError,
    ObjectNotFoundError,
    StorageError,
)
from reconciler.storage.base import TEMP_MARKER, Entry, Storage
from tests.storage.conftest import StorageFactory


def test_written_object_reads_back_identically(storage: Storage) -> None:
    storage.write_atomic("a/b/object.bin", b"\x00hello\xff")
    assert storage.read("a/b/object.bin") == b"\x00hello\xff"
    assert storage.size("a/b/object.bin") == 7
    assert storage.exists("a/b/object.bin")


def test_write_atomic_replaces_existing_object(storage: Storage) -> None:
    storage.write_atomic("settings.json", b"old")
    storage.write_atomic("settings.json", b"new content")
    assert storage.read("settings.json") == b"new content"


def test_missing_object_raises_not_found(storage: Storage) -> None:
    with pytest.raises(ObjectNotFoundError):
        storage.read("nope.json")
    with pytest.raises(ObjectNotFoundError), storage.open_read("nope.json"):
        pass
    assert not storage.exists("nope.json")


def test_list_dir_shows_files_and_folders_sorted(storage: Storage) -> None:
    storage.write_atomic("top.json", b"1")
    storage.write_atomic("backups/b2/manifest.json", b"22")
    storage.write_atomic("backups/b1/manifest.json", b"333")
    storage.write_atomic("backups/b1/data.enc", b"4444")
    root = {e.name: e for e in storage.list_dir("")}
    assert set(root) == {"top.json", "backups"}
    assert root["backups"].is_dir and not root["top.json"].is_dir
    assert root["top.json"].size == 1
    assert [e.name for e in storage.list_dir("backups")] == ["b1", "b2"]
    assert [(e.name, e.size) for e in storage.list_dir("backups/b1")] == [
        ("data.enc", 4),
        ("manifest.json", 3),
    ]
    assert storage.list_dir("missing-folder") == []


def test_delete_and_delete_tree_tolerate_missing(storage: Storage) -> None:
    storage.write_atomic("backups/b1/x", b"x")
    storage.write_atomic("backups/b1/sub/y", b"y")
    storage.write_atomic("keep", b"k")
    storage.delete("backups/b1/x")
    assert not storage.exists("backups/b1/x")
    storage.delete("backups/b1/x")
    storage.delete_tree("backups/b1")
    assert storage.list_dir("backups") == []
    storage.delete_tree("backups/b1")
    assert storage.read("keep") == b"k"


def test_large_object_streams_in_and_out(storage: Storage) -> None:
    block = os.urandom(1 << 20)
    digest = hashlib.sha256()
    with storage.open_write("big.bin") as out:
        for i in range(24):
            piece = bytes([i]) + block[1:]
            digest.update(piece)
            out.write(piece)
    assert storage.size("big.bin") == 24 << 20
    check = hashlib.sha256()
    with storage.open_read("big.bin") as stream:
        while chunk := stream.read(3 << 20):
            check.update(chunk)
    assert check.hexdigest() == digest.hexdigest()


# -- ranged reads (records out of packs) -------------------------------------------

PACK = "packs/0a1b.pack"
PACK_BYTES = bytes(range(256)) * 4  # 1000+ bytes where every offset reads differently


def test_read_range_gives_exactly_the_bytes_asked_for(storage: Storage) -> None:
    storage.write_atomic(PACK, PACK_BYTES)
    size = len(PACK_BYTES)
    for offset, length in [(0, 10), (500, 37), (size - 10, 10), (0, size), (size - 1, 1)]:
        assert storage.read_range(PACK, offset, length) == PACK_BYTES[offset : offset + length]
    for offset in (0, 500, size):  # nothing asked, nothing to miss: even at the very end
        assert storage.read_range(PACK, offset, 0) == b""


@pytest.mark.parametrize(
    ("offset", "length", "asked"),
    [
        (1020, 10, "bytes 1020-1029"),  # ends past the end
        (1024, 1, "bytes 1024-1024"),  # starts at the end
        (5000, 100, "bytes 5000-5099"),  # starts past the end
        (1025, 0, "offset 1025"),  # nothing asked, but from past the end
    ],
)
def test_read_range_past_the_end_is_an_integrity_error_naming_the_object(
    storage: Storage, offset: int, length: int, asked: str
) -> None:
    storage.write_atomic(PACK, PACK_BYTES)
    with pytest.raises(IntegrityError) as caught:
        storage.read_range(PACK, offset, length)
    message = str(caught.value)
    assert PACK in message
    assert message.endswith(f" is shorter than expected: asked for {asked}, it has 1024 bytes")


def test_read_range_of_an_empty_object_reaches_past_its_end(storage: Storage) -> None:
    storage.write_atomic("packs/empty.pack", b"")
    assert storage.read_range("packs/empty.pack", 0, 0) == b""
    with pytest.raises(IntegrityError, match=r"asked for bytes 0-0, it has 0 bytes$"):
        storage.read_range("packs/empty.pack", 0, 1)


def test_read_range_of_a_missing_object_raises_not_found(storage: Storage) -> None:
    storage.write_atomic(PACK, PACK_BYTES)
    for length in (10, 0):
        with pytest.raises(ObjectNotFoundError):
            storage.read_range("packs/ffff.pack", 0, length)
        with pytest.raises(ObjectNotFoundError):
            storage.read_range("no-folder/ffff.pack", 0, length)


def test_read_range_refuses_a_negative_offset_or_length(storage: Storage) -> None:
    storage.write_atomic(PACK, PACK_BYTES)
    for offset, length in [(-1, 10), (0, -1)]:
        with pytest.raises(ValueError, match="non-negative"):
            storage.read_range(PACK, offset, length)


def test_a_streamed_object_read_back_in_ranges_equals_the_whole(storage: Storage) -> None:
    mib = 1 << 20
    block = os.urandom(mib)
    whole = b"".join(bytes([i]) + block[1:] for i in range(9)) + block[:4321]
    with storage.open_write(PACK) as out:
        for start in range(0, len(whole), 3 * mib + 17):  # pieces that straddle the ranges
            out.write(whole[start : start + 3 * mib + 17])
    # Pieces of uneven size; their edges fall on and around the backends' own
    # request sizes (1 MiB SMB reads, 4 MiB Azure ranges, 8 MiB SMB maximum).
    edges = [0, 1, mib - 1, mib, 4 * mib - 3, 4 * mib + 5, 8 * mib, 8 * mib + 1, len(whole)]
    spans = list(itertools.pairwise(edges))
    pieces = [storage.read_range(PACK, a, b - a) for a, b in spans]
    assert [len(p) for p in pieces] == [b - a for a, b in spans]
    assert b"".join(pieces) == whole
    assert storage.read_range(PACK, 0, len(whole)) == whole


def test_object_is_invisible_until_the_write_completes(storage: Storage) -> None:
    with storage.open_write("backups/b1/manifest.json") as out:
        out.write(b"partial")
        assert not storage.exists("backups/b1/manifest.json")
    assert storage.read("backups/b1/manifest.json") == b"partial"


def test_failed_write_leaves_previous_object_and_no_final_key(storage: Storage) -> None:
    storage.write_atomic("catalog.json", b"v1")
    with pytest.raises(RuntimeError), storage.open_write("catalog.json") as out:
        out.write(b"v2-partial")
        raise RuntimeError("source failed")
    assert storage.read("catalog.json") == b"v1"
    with pytest.raises(RuntimeError), storage.open_write("new.json") as out:
        out.write(b"partial")
        raise RuntimeError("source failed")
    assert not storage.exists("new.json")
    assert not [e for e in storage.list_dir("") if TEMP_MARKER in e.name]


def test_names_with_spaces_and_non_ascii_letters(storage: Storage) -> None:
    key = "dir with space/Grüße ĳ 名前 (1).json"
    storage.write_atomic(key, "ünïcödé".encode())
    assert storage.read(key) == "ünïcödé".encode()
    assert [e.name for e in storage.list_dir("dir with space")] == ["Grüße ĳ 名前 (1).json"]


def test_create_exclusive_refuses_an_existing_key(storage: Storage) -> None:
    storage.create_exclusive("lock.json", b"first")
    with pytest.raises(ObjectExistsError):
        storage.create_exclusive("lock.json", b"second")
    assert storage.read("lock.json") == b"first"


def _race(factory: StorageFactory, who: int, barrier: object, results: object) -> None:
    store = factory()
    barrier.wait()  # type: ignore[attr-defined]
    try:
        store.create_exclusive("lock.json", str(who).encode())
        results.put(who)  # type: ignore[attr-defined]
    except ObjectExistsError:
        results.put(-1)  # type: ignore[attr-defined]


def test_exactly_one_of_two_racing_processes_creates_the_lock(
    shared_storage_factory: StorageFactory,
) -> None:
    storage_factory = shared_storage_factory
    storage = storage_factory()
    storage.ensure_root()
    ctx = multiprocessing.get_context("spawn")
    for round_ in range(5):
        storage.delete("lock.json")
        barrier = ctx.Barrier(2)
        results = ctx.Queue()
        procs = [
            ctx.Process(target=_race, args=(storage_factory, who, barrier, results))
            for who in (1, 2)
        ]
        for p in procs:
            p.start()
        outcomes = sorted(results.get(timeout=60) for _ in procs)
        for p in procs:
            p.join(timeout=60)
        assert outcomes[0] == -1 and outcomes[1] in (1, 2), f"round {round_}: {outcomes}"
        assert storage.read("lock.json") == str(outcomes[1]).encode()


BAD_KEYS = ["../escape", "/absolute", "a/../b", "a//b", "a\\b", "./a"]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_keys_that_could_leave_the_repository_folder_are_refused_by_every_operation(
    storage: Storage, key: str
) -> None:
    operations: list[Callable[[], object]] = [
        lambda: storage.read(key),
        lambda: storage.read_range(key, 0, 1),
        lambda: storage.size(key),
        lambda: storage.exists(key),
        lambda: storage.list_dir(key),
        lambda: storage.delete(key),
        lambda: storage.delete_tree(key),
        lambda: storage.write_atomic(key, b"x"),
        lambda: storage.create_exclusive(key, b"x"),
    ]
    for operation in operations:
        with pytest.raises(ValueError):
            operation()
    with pytest.raises(ValueError), storage.open_read(key):
        pass
    wrote = []
    with pytest.raises(ValueError), storage.open_write(key) as out:
        wrote.append(out.write(b"x"))  # refused before any byte is accepted
    assert wrote == []
    assert storage.list_dir("") == []


def test_a_folder_stays_listed_after_its_last_object_is_deleted(storage: Storage) -> None:
    storage.write_atomic("backups/b1/manifest.json", b"{}")
    storage.delete("backups/b1/manifest.json")
    assert storage.list_dir("backups") == [Entry("b1", True, 0)]
    assert storage.list_dir("backups/b1") == []


def test_delete_tree_of_the_root_removes_the_repository_folder(storage: Storage) -> None:
    storage.write_atomic("settings.json", b"{}")
    storage.write_atomic("backups/b1/manifest.json", b"{}")
    storage.delete_tree("")
    assert storage.list_dir("") == []
    assert not storage.exists("settings.json")
    assert not storage.exists("backups/b1/manifest.json")
    assert not storage.root_exists()


def test_an_object_and_a_folder_cannot_share_a_key(storage: Storage) -> None:
    storage.write_atomic("a", b"object")
    with pytest.raises(StorageError):
        storage.write_atomic("a/b", b"below an object")
    storage.write_atomic("f/x", b"in a folder")
    with pytest.raises(StorageError):
        storage.write_atomic("f", b"over a folder")
    assert storage.read("a") == b"object"
    assert storage.read("f/x") == b"in a folder"


def _thread_race(stores: list[Storage]) -> list[int]:
    """Which of ``stores``, each on its own thread, created lock.json."""
    barrier = threading.Barrier(len(stores))
    created: list[int] = []

    def race(who: int) -> None:
        barrier.wait()
        try:
            stores[who].create_exclusive("lock.json", str(who).encode())
            created.append(who)
        except ObjectExistsError:
            pass

    threads = [threading.Thread(target=race, args=(who,)) for who in range(len(stores))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return created


def test_exactly_one_of_several_racing_threads_creates_the_lock(
    storage: Storage, storage_factory: StorageFactory
) -> None:
    stores = [storage_factory() for _ in range(8)]  # a client per thread
    for store in stores:
        store.exists("lock.json")  # connected before the race
    # Threads switch every microsecond, so that a check-then-create is caught out.
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for round_ in range(40):
            storage.delete("lock.json")
            created = _thread_race(stores)
            assert len(created) == 1, f"round {round_}: {created}"
            assert storage.read("lock.json") == str(created[0]).encode()
    finally:
        sys.setswitchinterval(switch_interval)
