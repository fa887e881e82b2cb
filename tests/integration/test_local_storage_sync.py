"""Local storage flushes large objects to disk while they are written.

The fsync that commits an object must not wait for the whole object, so a
thread runs fdatasync every SYNC_BYTES; its errors must not be lost."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest

from reconciler.errors import StorageError
from reconciler.storage import local
from reconciler.storage.local import LocalStorage


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    repository = LocalStorage(tmp_path / "repo")
    repository.ensure_root()
    return repository


def test_a_large_object_is_flushed_while_written_and_committed_whole(
    storage: LocalStorage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local, "SYNC_BYTES", 64 * 1024)
    flushed: list[int] = []
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (flushed.append(fd), real(fd))[1])
    data = os.urandom(1024 * 1024)

    with storage.open_write("backups/b1/data") as out:
        for start in range(0, len(data), 10_000):
            out.write(data[start : start + 10_000])

    assert (tmp_path / "repo" / "backups" / "b1" / "data").read_bytes() == data
    # Whether the background flush ran before the final one is up to the
    # scheduler; what must hold is the content, and no thread left behind.
    assert not [t for t in threading.enumerate() if t.name == "fdatasync"]


def test_a_small_object_starts_no_thread(storage: LocalStorage) -> None:
    before = threading.active_count()
    with storage.open_write("small") as out:
        out.write(b"x" * 1000)
        assert threading.active_count() == before
    assert storage.read("small") == b"x" * 1000


def test_a_failed_background_flush_fails_the_write_and_leaves_nothing(
    storage: LocalStorage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local, "SYNC_BYTES", 64 * 1024)

    flushed = threading.Event()

    def broken(fd: int) -> None:
        flushed.set()
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", broken)

    with (
        pytest.raises(StorageError, match="input/output error"),
        storage.open_write("backups/b1/data") as out,
    ):
        for _ in range(20):
            out.write(os.urandom(10_000))
        # On a busy machine the flush thread may not have run yet; the final
        # fsync would then cover the data and there would be nothing to report.
        flushed.wait(timeout=60)

    assert list((tmp_path / "repo" / "backups" / "b1").iterdir()) == []
    assert not [t for t in threading.enumerate() if t.name == "fdatasync"]


def test_an_error_in_the_block_stops_the_thread_and_leaves_nothing(
    storage: LocalStorage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local, "SYNC_BYTES", 64 * 1024)

    with (
        pytest.raises(RuntimeError, match="source failed"),
        storage.open_write("backups/b1/data") as out,
    ):
        out.write(os.urandom(200_000))
        raise RuntimeError("source failed")

    assert list((tmp_path / "repo" / "backups" / "b1").iterdir()) == []
    assert not [t for t in threading.enumerate() if t.name == "fdatasync"]
