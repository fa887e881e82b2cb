"""The pack format and its movable records (reconciler.dedup.pack)."""

from __future__ import annotations

import io
import os
import random
from concurrent.futures import ThreadPoolExecutor

import pytest

from reconciler.dedup import pack as pack_module
from reconciler.dedup.chunk_id import chunk_id
from reconciler.dedup.chunker import MAX_SIZE
from reconciler.dedup.keys import IndexKey
from reconciler.dedup.pack import (
    FOOTER_BYTES,
    HEADER_BYTES,
    KEY_ID_BYTES,
    PackEntry,
    PackReader,
    PackWriter,
    new_pack_id,
    open_record,
    read_trailer,
    record_key_id,
    seal_record,
)
from reconciler.errors import IntegrityError

KEYS = IndexKey(bytes(range(32))).derive()
KEY_ID = bytes(range(200, 216))
DATA_KEY = bytes(range(100, 132))
OTHER_KEY_ID = bytes(16)
OTHER_DATA_KEY = bytes(range(1, 33))


class Blob:
    """A stored pack read by ranges, as a storage object would be."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def size(self) -> int:
        return len(self.data)

    def read_range(self, offset: int, length: int, /) -> bytes:
        return self.data[offset : offset + length]


def seal(chunk: bytes, key_id: bytes = KEY_ID, data_key: bytes = DATA_KEY) -> bytes:
    return seal_record(chunk_id(KEYS.chunk_id_key, chunk), chunk, key_id, data_key)


def write_pack(
    records: list[tuple[bytes, bytes]],
) -> tuple[str, bytes, list[PackEntry]]:
    """Write (chunk id, record) pairs into a new pack; return its name, bytes, entries."""
    sink = io.BytesIO()
    pack_id = new_pack_id()
    writer = PackWriter(sink, pack_id, KEYS.index_encryption_key)
    entries = [writer.add_record(cid, record) for cid, record in records]
    assert writer.finish() == len(sink.getvalue()) == writer.size
    return pack_id.hex(), sink.getvalue(), entries


def write_chunks(chunks: list[bytes]) -> tuple[str, bytes, list[PackEntry]]:
    return write_pack([(chunk_id(KEYS.chunk_id_key, c), seal(c)) for c in chunks])


def read_chunk(name: str, data: bytes, entry: PackEntry, data_key: bytes = DATA_KEY) -> bytes:
    record = PackReader(name, Blob(data)).read_record(entry)
    return open_record(name, record, entry.chunk_id, data_key, KEYS.chunk_id_key)


CHUNKS = [b"", b"a" * 5000, random.Random(3).randbytes(300), b"config: 1\n" * 40]


def test_chunks_round_trip_and_the_trailer_lists_them_in_order() -> None:
    name, data, entries = write_chunks(CHUNKS)
    assert read_trailer(name, Blob(data), KEYS.index_encryption_key) == entries
    assert [read_chunk(name, data, e) for e in entries] == CHUNKS
    assert len(data) < HEADER_BYTES + sum(len(c) for c in CHUNKS)  # compressed


def test_a_record_names_the_key_it_is_sealed_under() -> None:
    assert record_key_id(seal(b"data")) == KEY_ID
    assert record_key_id(seal(b"data", OTHER_KEY_ID, OTHER_DATA_KEY)) == OTHER_KEY_ID


def test_a_pack_of_no_chunks_is_valid() -> None:
    name, data, _ = write_chunks([])
    assert read_trailer(name, Blob(data), KEYS.index_encryption_key) == []


def test_records_copied_byte_for_byte_into_another_pack_still_open() -> None:
    name, data, entries = write_chunks(CHUNKS)
    reader = PackReader(name, Blob(data))
    # Compaction: a host with only the index key keeps every other record.
    kept = [(e.chunk_id, reader.read_record(e)) for e in entries[::2]]
    new_name, new_data, new_entries = write_pack(kept)
    assert read_trailer(new_name, Blob(new_data), KEYS.index_encryption_key) == new_entries
    assert [read_chunk(new_name, new_data, e) for e in new_entries] == CHUNKS[::2]


def test_one_pack_holds_records_of_several_data_keys() -> None:
    mine, theirs = b"mine" * 100, b"theirs" * 100
    name, data, (a, b) = write_pack(
        [
            (chunk_id(KEYS.chunk_id_key, mine), seal(mine)),
            (chunk_id(KEYS.chunk_id_key, theirs), seal(theirs, OTHER_KEY_ID, OTHER_DATA_KEY)),
        ]
    )
    assert read_chunk(name, data, a) == mine
    assert read_chunk(name, data, b, OTHER_DATA_KEY) == theirs


def test_a_record_of_one_key_id_cannot_be_opened_with_another_key() -> None:
    record = seal(b"secret" * 50)
    cid = chunk_id(KEYS.chunk_id_key, b"secret" * 50)
    with pytest.raises(IntegrityError, match="fails authentication"):
        open_record("p", record, cid, OTHER_DATA_KEY, KEYS.chunk_id_key)


def test_a_record_relabelled_to_another_key_id_is_refused() -> None:
    record = seal(b"secret" * 50)
    cid = chunk_id(KEYS.chunk_id_key, b"secret" * 50)
    relabelled = OTHER_KEY_ID + record[KEY_ID_BYTES:]
    with pytest.raises(IntegrityError, match="fails authentication"):
        open_record("p", relabelled, cid, DATA_KEY, KEYS.chunk_id_key)


def test_every_flipped_byte_is_detected() -> None:
    name, data, entries = write_chunks(CHUNKS[1:])
    records_end = entries[-1].offset + entries[-1].length
    for at in range(len(data)):
        damaged = data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]
        if at < HEADER_BYTES or at >= records_end:
            with pytest.raises(IntegrityError, match=f"[Pp]ack {name}"):
                read_trailer(name, Blob(damaged), KEYS.index_encryption_key)
        if at < records_end:
            hit = [e for e in entries if e.offset <= at < e.offset + e.length]
            with pytest.raises(IntegrityError, match=f"pack {name}|Pack {name}"):
                read_chunk(name, damaged, hit[0] if hit else entries[0])


def test_a_record_moved_to_another_ids_place_is_refused() -> None:
    name, data, (first, second, *_) = write_chunks(CHUNKS[1:])
    moved = PackEntry(first.chunk_id, second.offset, second.length)
    with pytest.raises(IntegrityError) as caught:
        read_chunk(name, data, moved)
    message = str(caught.value)
    assert first.chunk_id.hex()[:16] in message and name in message
    assert first.chunk_id.hex() not in message  # shortened: one sentence stays readable


def test_a_chunk_sealed_under_the_wrong_id_is_refused() -> None:
    wrong = chunk_id(KEYS.chunk_id_key, b"other data")
    name, data, (entry,) = write_pack([(wrong, seal_record(wrong, b"data", KEY_ID, DATA_KEY))])
    with pytest.raises(IntegrityError, match="does not hold the data its id names"):
        read_chunk(name, data, entry)


@pytest.mark.parametrize("keep", [0, 5, HEADER_BYTES, -1, -FOOTER_BYTES, -FOOTER_BYTES - 1])
def test_a_truncated_pack_is_detected_by_its_trailer(keep: int) -> None:
    name, data, _ = write_chunks(CHUNKS[1:])
    with pytest.raises(IntegrityError, match=name):
        read_trailer(name, Blob(data[:keep]), KEYS.index_encryption_key)


def test_a_record_cut_short_is_detected_and_intact_records_still_read() -> None:
    name, data, entries = write_chunks(CHUNKS[1:])
    cut = data[: entries[-1].offset + entries[-1].length - 1]
    short = entries[-1].chunk_id.hex()[:16]
    with pytest.raises(IntegrityError, match=f"chunk {short} in pack {name}"):
        read_chunk(name, cut, entries[-1])
    assert read_chunk(name, cut, entries[0]) == CHUNKS[1]
    record = data[entries[0].offset : entries[0].offset + entries[0].length]
    with pytest.raises(IntegrityError, match=f"in pack {name}"):
        open_record(name, record[:-1], entries[0].chunk_id, DATA_KEY, KEYS.chunk_id_key)


def test_the_trailer_needs_only_the_index_key_and_refuses_another() -> None:
    name, data, entries = write_chunks(CHUNKS)
    assert read_trailer(name, Blob(data), KEYS.index_encryption_key) == entries
    other = IndexKey(bytes(32)).derive().index_encryption_key
    with pytest.raises(IntegrityError, match="another index key"):
        read_trailer(name, Blob(data), other)


@pytest.mark.parametrize(
    "key", [KEYS.index_encryption_key, KEYS.chunk_id_key, bytes(range(32)), bytes(32)]
)
def test_the_data_cannot_be_decrypted_without_the_data_key(key: bytes) -> None:
    name, data, entries = write_chunks(CHUNKS[1:])
    with pytest.raises(IntegrityError, match="fails authentication"):
        read_chunk(name, data, entries[0], data_key=key)


def test_a_pack_stored_under_another_name_is_refused() -> None:
    _, data, _ = write_chunks(CHUNKS)
    other = new_pack_id().hex()
    with pytest.raises(IntegrityError, match=f"Pack {other} holds the header of pack"):
        read_trailer(other, Blob(data), KEYS.index_encryption_key)
    with pytest.raises(IntegrityError, match=other):
        PackReader(f"packs/{other}.pack", Blob(data))


def test_a_pack_is_found_by_its_object_name() -> None:
    name, data, entries = write_chunks(CHUNKS)
    assert read_trailer(f"packs/{name}.pack", Blob(data), KEYS.index_encryption_key) == entries


def test_sealing_the_same_chunk_twice_gives_two_different_records() -> None:
    assert seal(b"same chunk") != seal(b"same chunk")  # random nonces


def test_an_entry_outside_the_records_is_refused() -> None:
    name, data, entries = write_chunks(CHUNKS[1:])
    last = entries[-1]
    for entry in (
        PackEntry(last.chunk_id, last.offset, len(data)),
        PackEntry(last.chunk_id, 0, last.length),
        PackEntry(last.chunk_id, last.offset, 3),
    ):
        with pytest.raises(
            IntegrityError, match=f"in pack {name} (lies outside|has an impossible)"
        ):
            read_chunk(name, data, entry)


def test_a_trailer_moved_from_another_pack_is_refused() -> None:
    name, data, entries = write_chunks([b"a" * 1000, b"b" * 1000])
    _, other, other_entries = write_chunks([b"c" * 1000, b"d" * 1000])
    assert [e.length for e in entries] == [e.length for e in other_entries]
    records_end = entries[-1].offset + entries[-1].length
    grafted = data[:records_end] + other[records_end:]
    with pytest.raises(IntegrityError, match=f"trailer of pack {name} fails authentication"):
        read_trailer(name, Blob(grafted), KEYS.index_encryption_key)


def test_a_record_that_would_inflate_beyond_the_maximum_chunk_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    huge = bytes(MAX_SIZE + 1)
    cid = chunk_id(KEYS.chunk_id_key, huge)
    with monkeypatch.context() as patched:
        patched.setattr(pack_module, "MAX_SIZE", 2 * MAX_SIZE)  # a writer without the limit
        record = seal_record(cid, huge, KEY_ID, DATA_KEY)
    with pytest.raises(IntegrityError, match="fails authentication"):
        open_record("p", record, cid, DATA_KEY, KEYS.chunk_id_key)


def test_sealing_from_many_threads_at_once_gives_records_that_open() -> None:
    # Chunks of chunk size: one zstd context shared by threads crashes on these.
    chunks = [os.urandom(1000) * 1000 + bytes(50_000) for _ in range(64)]
    ids = [chunk_id(KEYS.chunk_id_key, c) for c in chunks]
    with ThreadPoolExecutor(8) as pool:
        records = list(
            pool.map(lambda i: seal_record(ids[i], chunks[i], KEY_ID, DATA_KEY), range(64))
        )
    opened = [
        open_record("p", r, i, DATA_KEY, KEYS.chunk_id_key)
        for r, i in zip(records, ids, strict=True)
    ]
    assert opened == chunks


def test_the_writer_refuses_what_is_not_a_record() -> None:
    writer = PackWriter(io.BytesIO(), new_pack_id(), KEYS.index_encryption_key)
    with pytest.raises(ValueError, match="not a sealed chunk"):
        writer.add_record(bytes(32), b"short")
