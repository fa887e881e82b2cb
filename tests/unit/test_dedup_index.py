"""Sorted runs of the chunk index: deltas and prefix shards (reconciler.dedup.index)."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.dedup.index import (
    ENTRY_BYTES,
    HEADER_BYTES,
    IndexEntry,
    IndexRun,
    merge_records,
    open_run,
    prefix_of,
    seal_run,
    shard_bits_for,
    split_into_shards,
)
from reconciler.dedup.keys import IndexKey
from reconciler.errors import CryptoError, IntegrityError

KEY = IndexKey(bytes(range(32))).derive().index_encryption_key
OTHER_KEY = IndexKey(bytes(32)).derive().index_encryption_key
NUMBER = 0xABC
PACK = bytes(range(16))


def id_in(number: int, tail: bytes, bits: int = 12) -> bytes:
    """A chunk id whose first ``bits`` bits are ``number``, the rest from ``tail`` (32 bytes)."""
    head = int.from_bytes(tail[:2], "big") & ((1 << (16 - bits)) - 1)
    return ((number << (16 - bits)) | head).to_bytes(2, "big") + tail[2:32]


def entry(chunk_id: bytes, offset: int = 25, length: int = 100) -> IndexEntry:
    return IndexEntry(chunk_id, PACK, offset, length)


def random_entries(count: int, number: int = NUMBER, bits: int = 12) -> list[IndexEntry]:
    return [entry(id_in(number, os.urandom(32), bits), i, i + 53) for i in range(count)]


def test_a_run_round_trips_and_finds_every_entry() -> None:
    entries = random_entries(500)
    stored = seal_run(entries, 12, NUMBER, KEY)
    run = open_run("index/shards/1-12-abc.idx", stored, KEY)
    assert (run.bits, run.number, len(run)) == (12, NUMBER, 500)
    assert len(stored) == HEADER_BYTES + 500 * ENTRY_BYTES + 16
    for e in entries:
        assert run.lookup(e.chunk_id) == e
    assert list(run.entries()) == sorted(entries, key=lambda e: e.chunk_id)


def test_a_delta_of_zero_bits_holds_any_id() -> None:
    entries = [entry(os.urandom(32)) for _ in range(100)]
    run = open_run("delta", seal_run(entries, 0, 0, KEY), KEY)
    assert all(run.lookup(e.chunk_id) == e for e in entries)
    assert run.covers(b"\x00" * 32) and run.covers(b"\xff" * 32)


def test_a_lookup_of_an_absent_id_finds_nothing() -> None:
    run = IndexRun.of(random_entries(50), 12, NUMBER)
    for probe in (bytes(32), b"\xff" * 32, os.urandom(32)):
        assert run.lookup(id_in(NUMBER, probe)) is None
    assert IndexRun.of([], 12, NUMBER).lookup(id_in(NUMBER, bytes(32))) is None


def test_a_run_covers_exactly_its_prefix() -> None:
    run = IndexRun.of([], 4, 0xA)
    assert run.covers(b"\xa0" + bytes(31)) and run.covers(b"\xaf" + bytes(31))
    assert not run.covers(b"\xb0" + bytes(31)) and not run.covers(b"\x9f" + bytes(31))
    assert prefix_of(b"\xab\xcf" + bytes(30), 12) == 0xABC
    assert prefix_of(b"\xff\xff" + bytes(30), 0) == 0


def test_sealing_refuses_duplicate_ids_and_ids_outside_the_prefix() -> None:
    (one,) = random_entries(1)
    with pytest.raises(ValueError, match="twice in one index run"):
        seal_run([one, entry(one.chunk_id, offset=99)], 12, NUMBER, KEY)
    with pytest.raises(ValueError, match="outside run 12-2749"):
        seal_run([one], 12, NUMBER + 1, KEY)
    with pytest.raises(ValueError, match="no run prefix"):
        seal_run([], 4, 16, KEY)


@pytest.mark.parametrize(
    ("count", "bits"),
    [(0, 0), (65_536, 0), (65_537, 1), (131_072, 1), (131_073, 2), (10_000_000, 8),
     (1 << 28, 12), (1 << 30, 12)],
)  # fmt: skip
def test_shards_grow_in_number_with_the_index(count: int, bits: int) -> None:
    assert shard_bits_for(count) == bits


def test_every_flipped_byte_of_a_stored_run_is_detected() -> None:
    stored = seal_run(random_entries(3), 12, NUMBER, KEY)
    key_check = range(16, 24)  # magic 8, version, bits, number 2, count 4: then the check
    for at in range(len(stored)):
        damaged = stored[:at] + bytes([stored[at] ^ 0xFF]) + stored[at + 1 :]
        expected = CryptoError if at in key_check else IntegrityError
        with pytest.raises(expected, match="Index run abc"):
            open_run("abc", damaged, KEY)


@pytest.mark.parametrize("keep", [0, 10, HEADER_BYTES, HEADER_BYTES + 16, -1])
def test_a_truncated_run_is_detected(keep: int) -> None:
    stored = seal_run(random_entries(3), 12, NUMBER, KEY)
    with pytest.raises(IntegrityError, match="Index run abc is truncated"):
        open_run("abc", stored[:keep], KEY)


def test_a_run_whose_header_was_edited_to_another_prefix_is_refused() -> None:
    stored = seal_run(random_entries(3), 12, NUMBER, KEY)
    edited = stored[:10] + (NUMBER + 1).to_bytes(2, "big") + stored[12:]
    with pytest.raises(IntegrityError, match="Index run abd is damaged"):
        open_run("abd", edited, KEY)
    widened = stored[:9] + bytes([0]) + bytes(2) + stored[12:]
    with pytest.raises(IntegrityError, match="Index run all is damaged"):
        open_run("all", widened, KEY)


def test_a_run_under_another_index_key_is_refused_in_one_sentence() -> None:
    stored = seal_run(random_entries(3), 12, NUMBER, KEY)
    with pytest.raises(CryptoError) as caught:
        open_run("index/deltas/x.idx", stored, OTHER_KEY)
    message = str(caught.value)
    assert message == (
        "Index run index/deltas/x.idx was written under another index key (wrong index key)."
    )
    assert KEY.hex() not in message and OTHER_KEY.hex() not in message


def test_sealing_the_same_run_twice_gives_different_objects() -> None:
    entries = random_entries(3)
    first, second = seal_run(entries, 12, NUMBER, KEY), seal_run(entries, 12, NUMBER, KEY)
    assert first[HEADER_BYTES:-16] != second[HEADER_BYTES:-16]  # never one key and nonce twice
    assert open_run("abc", first, KEY) == open_run("abc", second, KEY)


def test_merging_runs_keeps_the_entry_of_the_first_run_given() -> None:
    shared = os.urandom(32)
    newer = IndexRun.of([entry(shared, offset=2), *random_entries(20, 0, 0)])
    older = IndexRun.of([entry(shared, offset=1), *random_entries(20, 0, 0)])
    merged = IndexRun.of(
        IndexEntry.unpack(r) for r in merge_records([newer.records(), older.records()])
    )
    assert len(merged) == 41
    assert merged.lookup(shared) == entry(shared, offset=2)  # not the smaller record


@settings(max_examples=60, deadline=None)
@given(
    runs=st.lists(
        st.lists(st.tuples(st.binary(min_size=32, max_size=32), st.integers(0, 2**32 - 1))),
        max_size=5,
    ),
    bits=st.integers(0, 4),
)
def test_compaction_gives_shards_that_cover_every_id_once(
    runs: list[list[tuple[bytes, int]]], bits: int
) -> None:
    expected: dict[bytes, IndexEntry] = {}
    sealed = []
    for batch in runs:
        fresh = {cid: entry(cid, offset) for cid, offset in batch}
        for cid, e in fresh.items():
            expected.setdefault(cid, e)
        sealed.append(seal_run(fresh.values(), 0, 0, KEY))
    opened = [open_run("d", data, KEY) for data in sealed]
    shards = list(split_into_shards(merge_records([r.records() for r in opened]), bits))
    assert [(s.bits, s.number) for s in shards] == [(bits, n) for n in range(1 << bits)]
    stored = [open_run("s", s.seal(KEY), KEY) for s in shards]
    assert sum(len(s) for s in stored) == len(expected)
    for cid, e in expected.items():
        (holder,) = [s for s in stored if s.covers(cid)]
        assert holder.lookup(cid) == e


def test_splitting_refuses_a_stream_out_of_order() -> None:
    records = [entry(b"\x02" * 32).pack(), entry(b"\x01" * 32).pack()]
    with pytest.raises(ValueError, match="out of order"):
        list(split_into_shards(records, 1))
