"""A source's chunk list, streamed under the index key (reconciler.dedup.chunk_list)."""

from __future__ import annotations

import io
import os
import tracemalloc
from collections.abc import Iterator

import pytest

from reconciler.dedup import chunk_list
from reconciler.dedup.chunk_list import (
    ENTRY_BYTES,
    FRAME_SIZE,
    HEADER_BYTES,
    ChunkListWriter,
    read_chunk_list,
)
from reconciler.dedup.keys import IndexKey
from reconciler.errors import CryptoError, IntegrityError

KEY = IndexKey(bytes(range(32))).derive().index_encryption_key
OTHER_KEY = IndexKey(bytes(32)).derive().index_encryption_key
NAME = "backups/20261205T1200Z/etc.tar.chunks"


def chunks(count: int) -> list[tuple[bytes, int]]:
    return [(os.urandom(32), 256 * 1024 + i) for i in range(count)]


def write(entries: list[tuple[bytes, int]]) -> bytes:
    out = io.BytesIO()
    with ChunkListWriter(out, KEY) as writer:
        for chunk_id, length in entries:
            writer.add(chunk_id, length)
    assert writer.count == len(entries)
    assert writer.total_length == sum(length for _, length in entries)
    assert writer.bytes_written == len(out.getvalue())
    return out.getvalue()


def read(data: bytes, key: bytes = KEY) -> list[tuple[bytes, int]]:
    return list(read_chunk_list(NAME, io.BytesIO(data), key))


@pytest.mark.parametrize("count", [0, 1, FRAME_SIZE // ENTRY_BYTES, 70_000])
def test_a_list_round_trips_in_order(count: int) -> None:
    entries = chunks(count)
    assert read(write(entries)) == entries


def test_the_list_is_encrypted() -> None:
    entries = chunks(10)
    data = write(entries)
    assert all(chunk_id not in data for chunk_id, _ in entries)


def test_every_flipped_byte_is_detected() -> None:
    data = write(chunks(3))
    key_check = range(9, 17)  # magic 8, version 1: then the key check
    for at in range(len(data)):
        damaged = data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]
        expected = CryptoError if at in key_check else IntegrityError
        with pytest.raises(expected, match=f"Chunk list {NAME}"):
            read(damaged)


@pytest.mark.parametrize("keep", [0, 5, HEADER_BYTES, HEADER_BYTES + 10, -1, -17])
def test_a_truncated_list_is_detected(keep: int) -> None:
    data = write(chunks(3))
    with pytest.raises(IntegrityError, match=f"Chunk list {NAME}"):
        read(data[:keep])


def test_a_list_cut_at_a_frame_boundary_is_detected() -> None:
    entries = chunks(FRAME_SIZE // ENTRY_BYTES + 5)
    data = write(entries)
    first_frame_end = HEADER_BYTES + 45 + 4 + FRAME_SIZE + 16  # list header, stream header
    with pytest.raises(IntegrityError, match=f"Chunk list {NAME} is truncated"):
        read(data[:first_frame_end])


def test_a_list_under_another_index_key_is_refused_in_one_sentence() -> None:
    data = write(chunks(3))
    with pytest.raises(CryptoError) as caught:
        read(data, OTHER_KEY)
    message = str(caught.value)
    assert message == (f"Chunk list {NAME} was written under another index key (wrong index key).")
    assert KEY.hex() not in message and OTHER_KEY.hex() not in message


def test_an_abandoned_list_reads_as_truncated() -> None:
    out = io.BytesIO()
    with pytest.raises(RuntimeError), ChunkListWriter(out, KEY) as writer:
        for chunk_id, length in chunks(FRAME_SIZE // ENTRY_BYTES + 5):
            writer.add(chunk_id, length)
        raise RuntimeError("the source failed")
    with pytest.raises(IntegrityError, match="is truncated"):
        read(out.getvalue())


def test_a_list_that_is_no_chunk_list_is_refused() -> None:
    with pytest.raises(IntegrityError, match=f"Chunk list {NAME} is truncated or not a"):
        read(b"BKCTLENC" + bytes(100))


def test_the_writer_refuses_malformed_entries() -> None:
    writer = ChunkListWriter(io.BytesIO(), KEY)
    with pytest.raises(ValueError, match="chunk id"):
        writer.add(bytes(31), 5)
    with pytest.raises(ValueError, match="4 bytes"):
        writer.add(bytes(32), 1 << 32)


class _Counting:
    """A sink that keeps only the byte count, as a storage upload would."""

    def __init__(self) -> None:
        self.size = 0

    def write(self, data: bytes, /) -> int:
        self.size += len(data)
        return len(data)


class _Replay:
    """A reader that regenerates what a writer wrote, without keeping it."""

    def __init__(self, parts: Iterator[bytes]) -> None:
        self._parts = parts
        self._buffer = b""

    def read(self, size: int, /) -> bytes:
        while len(self._buffer) < size:
            more = next(self._parts, b"")
            if not more:
                break
            self._buffer += more
        out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out


def test_a_long_list_is_written_and_read_in_bounded_memory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Small frames keep the test fast; the bound is in frames either way.
    frame = ENTRY_BYTES * 256
    monkeypatch.setattr(chunk_list, "FRAME_SIZE", frame)
    count = 20_000  # 720 KB of list, 78 frames
    captured: list[bytes] = []

    class Keep:
        def write(self, data: bytes, /) -> int:
            captured.append(data)
            return len(data)

    tracemalloc.start()
    try:
        writer = ChunkListWriter(_Counting(), KEY)
        for i in range(count):
            writer.add(i.to_bytes(32, "big"), i)
        writer.close()
        _, write_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert write_peak < 4 * frame

    with ChunkListWriter(Keep(), KEY) as keeper:
        for i in range(count):
            keeper.add(i.to_bytes(32, "big"), i)
    data = b"".join(captured)
    tracemalloc.start()
    try:
        seen = 0
        source = _Replay(data[at : at + 4096] for at in range(0, len(data), 4096))
        for chunk_id, length in read_chunk_list(NAME, source, KEY):
            assert int.from_bytes(chunk_id, "big") == length == seen
            seen += 1
        _, read_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seen == count
    assert read_peak < 8 * frame


@pytest.mark.parametrize("frame", [1, 35, 100, ENTRY_BYTES * 3])
def test_entries_split_across_frames_read_back_whole(
    frame: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A reader takes the frame size from the stored header, whatever wrote it.
    monkeypatch.setattr(chunk_list, "FRAME_SIZE", frame)
    entries = chunks(7)
    assert read(write(entries)) == entries
