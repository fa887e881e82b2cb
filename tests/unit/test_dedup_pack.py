"""The pack format (reconciler.dedup.pack)."""

from __future__ import annotations

import io
import random

import pytest

from reconciler.dedup import pack as pack_module
from reconciler.dedup.chunk_id import chunk_id
from reconciler.dedup.chunker import MAX_SIZE
from reconciler.dedup.keys import IndexKey
from reconciler.dedup.pack import (
    FOOTER_BYTES,
    HEADER_BYTES,
    PackEntry,
    PackReader,
    PackWriter,
    new_pack_id,
    read_trailer,
)
from reconciler.errors import IntegrityError

KEYS = IndexKey(bytes(range(32))).derive()
DATA_KEY = bytes(range(100, 132))


class Blob:
    """A stored pack read by ranges, as a storage object would be."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def size(self) -> int:
        return len(self.data)

    def read_range(self, offset: int, length: int, /) -> bytes:
        return self.data[offset : offset + length]


def write_pack(
    chunks: list[bytes], data_key: bytes = DATA_KEY
) -> tuple[str, bytes, list[PackEntry]]:
    sink = io.BytesIO()
    pack_id = new_pack_id()
    writer = PackWriter(sink, data_key, KEYS.index_encryption_key, pack_id)
    entries = [writer.add(chunk_id(KEYS.chunk_id_key, c), c) for c in chunks]
    assert writer.finish() == len(sink.getvalue())
    return pack_id.hex(), sink.getvalue(), entries


def reader(name: str, data: bytes, data_key: bytes = DATA_KEY) -> PackReader:
    return PackReader(name, Blob(data), data_key, KEYS.chunk_id_key)


CHUNKS = [b"", b"a" * 5000, random.Random(3).randbytes(300), b"config: 1\n" * 40]


def test_chunks_round_trip_and_the_trailer_lists_them_in_order() -> None:
    name, data, entries = write_pack(CHUNKS)
    assert read_trailer(name, Blob(data), KEYS.index_encryption_key) == entries
    pack = reader(name, data)
    assert [pack.read_chunk(e) for e in entries] == CHUNKS
    assert len(data) < HEADER_BYTES + sum(len(c) for c in CHUNKS)  # compressed


def test_a_pack_of_no_chunks_is_valid() -> None:
    name, data, _ = write_pack([])
    assert read_trailer(name, Blob(data), KEYS.index_encryption_key) == []


def test_every_flipped_byte_is_detected() -> None:
    name, data, entries = write_pack(CHUNKS[1:])
    records_end = entries[-1].offset + entries[-1].length
    for at in range(len(data)):
        damaged = data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]
        if at < HEADER_BYTES or at >= records_end:
            with pytest.raises(IntegrityError, match=f"[Pp]ack {name}"):
                read_trailer(name, Blob(damaged), KEYS.index_encryption_key)
        if at < records_end:
            hit = [e for e in entries if e.offset <= at < e.offset + e.length]
            with pytest.raises(IntegrityError, match=f"pack {name}|Pack {name}"):
                reader(name, damaged).read_chunk(hit[0] if hit else entries[0])


def test_a_record_moved_to_another_ids_place_is_refused() -> None:
    name, data, (first, second, *_) = write_pack(CHUNKS[1:])
    moved = PackEntry(first.chunk_id, second.offset, second.length)
    with pytest.raises(IntegrityError) as caught:
        reader(name, data).read_chunk(moved)
    assert first.chunk_id.hex() in str(caught.value) and name in str(caught.value)


def test_a_chunk_written_under_the_wrong_id_is_refused() -> None:
    sink = io.BytesIO()
    pack_id = new_pack_id()
    writer = PackWriter(sink, DATA_KEY, KEYS.index_encryption_key, pack_id)
    entry = writer.add(chunk_id(KEYS.chunk_id_key, b"other data"), b"data")
    writer.finish()
    with pytest.raises(IntegrityError, match="does not hold the data its id names"):
        reader(pack_id.hex(), sink.getvalue()).read_chunk(entry)


@pytest.mark.parametrize("keep", [0, 5, HEADER_BYTES, -1, -FOOTER_BYTES, -FOOTER_BYTES - 1])
def test_a_truncated_pack_is_detected_by_its_trailer(keep: int) -> None:
    name, data, _ = write_pack(CHUNKS[1:])
    with pytest.raises(IntegrityError, match=name):
        read_trailer(name, Blob(data[:keep]), KEYS.index_encryption_key)


def test_a_record_cut_short_is_detected_and_intact_records_still_read() -> None:
    name, data, entries = write_pack(CHUNKS[1:])
    cut = data[: entries[-1].offset + entries[-1].length - 1]
    with pytest.raises(IntegrityError, match=f"chunk {entries[-1].chunk_id.hex()} in pack {name}"):
        reader(name, cut).read_chunk(entries[-1])
    assert reader(name, cut).read_chunk(entries[0]) == CHUNKS[1]


def test_the_trailer_needs_only_the_index_key_and_refuses_another() -> None:
    name, data, entries = write_pack(CHUNKS)
    assert read_trailer(name, Blob(data), KEYS.index_encryption_key) == entries
    other = IndexKey(bytes(32)).derive().index_encryption_key
    with pytest.raises(IntegrityError, match="another index key"):
        read_trailer(name, Blob(data), other)


@pytest.mark.parametrize(
    "key", [KEYS.index_encryption_key, KEYS.chunk_id_key, bytes(range(32)), bytes(32)]
)
def test_the_data_cannot_be_decrypted_without_the_data_key(key: bytes) -> None:
    name, data, entries = write_pack(CHUNKS[1:])
    with pytest.raises(IntegrityError, match="fails authentication"):
        reader(name, data, data_key=key).read_chunk(entries[0])


def test_a_pack_stored_under_another_name_is_refused() -> None:
    _, data, _ = write_pack(CHUNKS)
    other = new_pack_id().hex()
    with pytest.raises(IntegrityError, match=f"Pack {other} holds the header of pack"):
        read_trailer(other, Blob(data), KEYS.index_encryption_key)
    with pytest.raises(IntegrityError, match=other):
        reader(other, data)


def test_the_same_chunk_in_two_packs_gives_two_different_records() -> None:
    _, first, (a,) = write_pack([b"same chunk"])
    _, second, (b,) = write_pack([b"same chunk"])
    assert first[a.offset : a.offset + a.length] != second[b.offset : b.offset + b.length]


def test_the_same_chunk_twice_in_one_pack_gives_two_different_records() -> None:
    _, data, (a, b) = write_pack([b"same chunk", b"same chunk"])
    assert data[a.offset : a.offset + a.length] != data[b.offset : b.offset + b.length]


def test_an_entry_outside_the_records_is_refused() -> None:
    name, data, entries = write_pack(CHUNKS[1:])
    last = entries[-1]
    for entry in (
        PackEntry(last.chunk_id, last.offset, len(data)),
        PackEntry(last.chunk_id, 0, last.length),
        PackEntry(last.chunk_id, last.offset, 3),
    ):
        with pytest.raises(
            IntegrityError, match=f"in pack {name} (lies outside|has an impossible)"
        ):
            reader(name, data).read_chunk(entry)


def test_a_trailer_moved_from_another_pack_is_refused() -> None:
    name, data, entries = write_pack([b"a" * 1000, b"b" * 1000])
    _, other, other_entries = write_pack([b"c" * 1000, b"d" * 1000])
    assert [e.length for e in entries] == [e.length for e in other_entries]
    records_end = entries[-1].offset + entries[-1].length
    grafted = data[:records_end] + other[records_end:]
    with pytest.raises(IntegrityError, match=f"trailer of pack {name} fails authentication"):
        read_trailer(name, Blob(grafted), KEYS.index_encryption_key)


def test_a_record_that_would_inflate_beyond_the_maximum_chunk_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    huge = bytes(MAX_SIZE + 1)
    with monkeypatch.context() as patched:
        patched.setattr(pack_module, "MAX_SIZE", 2 * MAX_SIZE)  # a writer without the limit
        name, data, (entry,) = write_pack([huge])
    with pytest.raises(IntegrityError, match="fails authentication"):
        reader(name, data).read_chunk(entry)
