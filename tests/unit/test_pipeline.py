"""The byte pipelines: multi-threaded zstd, the restore reader thread, progress counts."""

from __future__ import annotations

import os
import sys
import threading

import pytest
import zstandard

from reconciler.backup import pipeline
from reconciler.backup.pipeline import open_object, store_object
from reconciler.crypto.stream import encrypted_size
from reconciler.errors import IntegrityError
from reconciler.repository.objects import BackupObject
from reconciler.repository.records import StoredObject
from reconciler.storage.memory import MemoryStorage
from reconciler.streams import ByteSink

KEY = bytes(range(32))
# Compressible and incompressible parts, several zstd jobs and frames long.
PLAIN = b"".join(b"line %08d of a log that compresses\n" % i for i in range(300_000)) + (
    os.urandom(3 * 1024 * 1024)
)


def store(storage: MemoryStorage, data: bytes = PLAIN, key: str = "obj") -> StoredObject:
    def produce(out: ByteSink) -> None:
        view = memoryview(data)
        for start in range(0, len(data), 100_003):
            out.write(view[start : start + 100_003])

    stored, _ = store_object(BackupObject(storage, key, key), KEY, produce)
    return stored


def test_an_object_round_trips_through_threaded_compression_and_read_ahead() -> None:
    storage = MemoryStorage()
    stored = store(storage)
    with open_object(BackupObject(storage, "obj", "obj"), stored, KEY) as plain:
        parts = [plain.read(7), plain.read(65_536)]
        while chunk := plain.read(1_000_003):
            parts.append(chunk)
    assert b"".join(parts) == PLAIN


def test_the_stored_object_is_one_valid_zstd_stream_whatever_the_thread_count() -> None:
    storage = MemoryStorage()
    stored = store(storage)
    assert pipeline.compression_threads() in (0, *range(2, pipeline.MAX_COMPRESSION_THREADS + 1))
    with open_object(BackupObject(storage, "obj", "obj"), stored, KEY) as plain:
        compressed = zstandard.ZstdCompressor(level=3).compress(plain.read())
    assert zstandard.ZstdDecompressor().decompress(compressed) == PLAIN


def test_progress_counts_every_stored_byte_both_ways() -> None:
    storage = MemoryStorage()
    written: list[int] = []
    stored, _ = store_object(
        BackupObject(storage, "obj", "obj"), KEY, lambda out: out.write(PLAIN), written.append
    )
    read: list[int] = []
    with open_object(BackupObject(storage, "obj", "obj"), stored, KEY, read.append) as plain:
        plain.read(10)
    assert sum(written) == stored.size_bytes == len(storage.objects["obj"])
    assert sum(read) == stored.size_bytes
    compressed_max = encrypted_size(len(PLAIN))
    assert stored.size_bytes < compressed_max


def threads_now() -> set[threading.Thread]:
    return set(threading.enumerate())


@pytest.mark.parametrize("where", [100, 5_000_000])
def test_a_flipped_bit_is_an_integrity_error_and_the_reader_thread_ends(where: int) -> None:
    storage = MemoryStorage()
    stored = store(storage)
    damaged = bytearray(storage.objects["obj"])
    damaged[min(where, len(damaged) - 100)] ^= 0x10
    storage.objects["obj"] = bytes(damaged)
    before = threads_now()
    with (
        pytest.raises(IntegrityError, match="obj"),
        open_object(BackupObject(storage, "obj", "obj"), stored, KEY) as plain,
    ):
        while plain.read(1 << 20):
            pass
    assert threads_now() <= before


def test_a_consumer_that_fails_stops_the_reader_thread_and_keeps_its_error() -> None:
    storage = MemoryStorage()
    stored = store(storage)
    before = threads_now()
    interval = sys.getswitchinterval()
    with (
        pytest.raises(RuntimeError, match="target full"),
        open_object(BackupObject(storage, "obj", "obj"), stored, KEY) as plain,
    ):
        plain.read(10)
        assert sys.getswitchinterval() <= pipeline.SWITCH_INTERVAL
        raise RuntimeError("target full")
    assert threads_now() <= before
    assert sys.getswitchinterval() == interval


def test_a_consumer_that_stops_early_still_gets_everything_verified() -> None:
    storage = MemoryStorage()
    stored = store(storage)
    storage.objects["obj"] = storage.objects["obj"][:-1]  # the final frame is cut
    with (
        pytest.raises(IntegrityError),
        open_object(BackupObject(storage, "obj", "obj"), stored, KEY) as plain,
    ):
        plain.read(10)


def test_an_object_that_does_not_match_its_manifest_is_refused_at_the_end() -> None:
    storage = MemoryStorage()
    stored = store(storage)
    wrong = StoredObject(stored.name, stored.size_bytes, "0" * 64)
    with (
        pytest.raises(IntegrityError, match="does not match its manifest"),
        open_object(BackupObject(storage, "obj", "obj"), wrong, KEY) as plain,
    ):
        assert plain.read(10) == PLAIN[:10]


def test_malloc_tuning_is_done_once_and_harmless() -> None:
    pipeline._tune_malloc()
    pipeline._tune_malloc()
    storage = MemoryStorage()
    stored = store(storage, b"x" * 10)
    with open_object(BackupObject(storage, "obj", "obj"), stored, KEY) as plain:
        assert plain.read() == b"x" * 10
