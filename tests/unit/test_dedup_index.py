"""The sharded chunk index (reconciler.dedup.index)."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.dedup.index import (
    ENTRY_BYTES,
    HEADER_BYTES,
    SHARD_COUNT,
    IndexEntry,
    Shard,
    open_shard,
    shard_name,
    shard_of,
)
from reconciler.dedup.keys import IndexKey
from reconciler.errors import CryptoError, IntegrityError

KEY = IndexKey(bytes(range(32))).derive().index_encryption_key
OTHER_KEY = IndexKey(bytes(32)).derive().index_encryption_key
NUMBER = 0xABC
PACK = bytes(range(16))


def id_in(number: int, tail: bytes) -> bytes:
    """A chunk id of shard ``number``: its first 12 bits, then ``tail``."""
    return ((number << 4) | (tail[0] >> 4)).to_bytes(2, "big") + tail[1:31]


def entry(chunk_id: bytes, offset: int = 25, length: int = 100) -> IndexEntry:
    return IndexEntry(chunk_id, PACK, offset, length)


def random_entries(count: int, number: int = NUMBER) -> list[IndexEntry]:
    return [entry(id_in(number, os.urandom(31)), i, i + 28) for i in range(count)]


def test_a_shard_round_trips_and_finds_every_entry() -> None:
    entries = random_entries(500)
    shard = Shard.empty(NUMBER).merge(entries)
    stored = shard.seal(KEY)
    opened = open_shard(shard_name(NUMBER), stored, NUMBER, KEY)
    assert opened == shard
    assert len(opened) == 500
    assert len(stored) == HEADER_BYTES + 500 * ENTRY_BYTES + 16
    for e in entries:
        assert opened.lookup(e.chunk_id) == e


def test_a_lookup_of_an_absent_id_finds_nothing() -> None:
    shard = Shard.empty(NUMBER).merge(random_entries(50))
    for probe in (bytes(31), b"\xff" * 31, os.urandom(31)):
        assert shard.lookup(id_in(NUMBER, probe)) is None
    assert Shard.empty(NUMBER).lookup(id_in(NUMBER, bytes(31))) is None


@settings(max_examples=100, deadline=None)
@given(
    batches=st.lists(
        st.lists(st.tuples(st.binary(min_size=31, max_size=31), st.integers(0, 2**32 - 1))),
        max_size=5,
    )
)
def test_merging_batches_keeps_the_first_entry_of_each_id_sorted(
    batches: list[list[tuple[bytes, int]]],
) -> None:
    shard = Shard.empty(NUMBER)
    expected: dict[bytes, IndexEntry] = {}
    for batch in batches:
        entries = [entry(id_in(NUMBER, tail), offset) for tail, offset in batch]
        shard = shard.merge(entries)
        for e in entries:
            expected.setdefault(e.chunk_id, e)
    assert len(shard) == len(expected)
    assert shard.body == b"".join(expected[k].pack() for k in sorted(expected))
    for chunk_id, e in expected.items():
        assert shard.lookup(chunk_id) == e


def test_an_entry_of_another_shard_is_refused_by_merge() -> None:
    with pytest.raises(ValueError, match="not in shard"):
        Shard.empty(NUMBER).merge([entry(id_in(NUMBER + 1, bytes(31)))])


def test_ids_fall_into_shards_by_their_first_twelve_bits() -> None:
    assert SHARD_COUNT == 4096
    assert shard_of(b"\xab\xcf" + bytes(30)) == 0xABC
    assert shard_of(b"\x00\x0f" + bytes(30)) == 0
    assert shard_of(b"\xff\xff" + bytes(30)) == 4095
    assert shard_name(0xABC) == "abc" and shard_name(1) == "001"


def test_every_flipped_byte_of_a_stored_shard_is_detected() -> None:
    stored = Shard.empty(NUMBER).merge(random_entries(3)).seal(KEY)
    key_check = range(16, 24)  # magic 8, version, bits, number 2, count 4: then the check
    for at in range(len(stored)):
        damaged = stored[:at] + bytes([stored[at] ^ 0xFF]) + stored[at + 1 :]
        expected = CryptoError if at in key_check else IntegrityError
        with pytest.raises(expected, match="Index shard abc"):
            open_shard("abc", damaged, NUMBER, KEY)


@pytest.mark.parametrize("keep", [0, 10, HEADER_BYTES, HEADER_BYTES + 16, -1])
def test_a_truncated_shard_is_detected(keep: int) -> None:
    stored = Shard.empty(NUMBER).merge(random_entries(3)).seal(KEY)
    with pytest.raises(IntegrityError, match="Index shard abc is truncated"):
        open_shard("abc", stored[:keep], NUMBER, KEY)


def test_a_shard_stored_under_another_number_is_refused() -> None:
    stored = Shard.empty(NUMBER).merge(random_entries(3)).seal(KEY)
    with pytest.raises(IntegrityError, match="holds shard 2748, not 2749"):
        open_shard("abd", stored, NUMBER + 1, KEY)


def test_a_shard_whose_header_was_edited_to_another_number_is_refused() -> None:
    stored = Shard.empty(NUMBER).merge(random_entries(3)).seal(KEY)
    edited = stored[:10] + (NUMBER + 1).to_bytes(2, "big") + stored[12:]
    with pytest.raises(IntegrityError, match="Index shard abd"):
        open_shard("abd", edited, NUMBER + 1, KEY)


def test_a_shard_under_another_index_key_is_refused_in_one_sentence() -> None:
    stored = Shard.empty(NUMBER).merge(random_entries(3)).seal(KEY)
    with pytest.raises(CryptoError) as caught:
        open_shard("index/abc", stored, NUMBER, OTHER_KEY)
    message = str(caught.value)
    assert message == "Index shard index/abc was written under another index key."
    assert KEY.hex() not in message and OTHER_KEY.hex() not in message


def test_sealing_the_same_shard_twice_gives_different_objects() -> None:
    shard = Shard.empty(NUMBER).merge(random_entries(3))
    first, second = shard.seal(KEY), shard.seal(KEY)
    assert first[HEADER_BYTES:-16] != second[HEADER_BYTES:-16]  # never one key and nonce twice
    assert open_shard("abc", first, NUMBER, KEY) == open_shard("abc", second, NUMBER, KEY)
