"""The index key and the keys derived from it (reconciler.dedup.keys, chunk_id)."""

from __future__ import annotations

import base64

import pytest

from reconciler.dedup.chunk_id import chunk_id, chunk_id_hex
from reconciler.dedup.keys import SEED_MAX, IndexKey
from reconciler.errors import CryptoError

KEY = IndexKey(bytes(range(32)))


def test_an_index_key_round_trips_through_its_base64_text() -> None:
    key = IndexKey.generate()
    assert IndexKey.from_base64(key.to_base64(), where="spec.encryption.indexKey") == key


@pytest.mark.parametrize(
    "text",
    [
        "not base64 at all!",
        base64.b64encode(b"s3cr3t-too-short").decode(),
        base64.b64encode(bytes(33)).decode(),
        "",
    ],
)
def test_a_malformed_index_key_is_one_sentence_that_never_quotes_it(text: str) -> None:
    with pytest.raises(CryptoError) as caught:
        IndexKey.from_base64(text, where="spec.encryption.indexKey")
    message = str(caught.value)
    assert "spec.encryption.indexKey" in message
    assert message.count(". ") == 0 and message.endswith(".")
    assert not text or text not in message


def test_the_key_bytes_never_show_in_a_repr() -> None:
    derived = KEY.derive()
    for shown in (repr(KEY), repr(derived)):
        assert KEY.secret.hex() not in shown and repr(KEY.secret) not in shown
        assert derived.chunk_id_key.hex() not in shown and str(derived.chunker_seed) not in shown


def test_derived_keys_are_reproducible_independent_and_in_range() -> None:
    first, again = KEY.derive(), KEY.derive()
    assert first == again
    assert first.chunk_id_key != first.index_encryption_key
    assert KEY.secret not in (first.chunk_id_key, first.index_encryption_key)
    assert 1 <= first.chunker_seed <= SEED_MAX
    other = IndexKey(bytes(32)).derive()
    assert other.chunk_id_key != first.chunk_id_key
    assert other.chunker_seed != first.chunker_seed


def test_a_chunk_id_depends_on_the_key_and_the_data() -> None:
    id_key = KEY.derive().chunk_id_key
    other_key = IndexKey(bytes(32)).derive().chunk_id_key
    assert chunk_id(id_key, b"data") == chunk_id(id_key, memoryview(b"data"))
    assert chunk_id(id_key, b"data") != chunk_id(id_key, b"date")
    assert chunk_id(id_key, b"data") != chunk_id(other_key, b"data")
    assert len(chunk_id(id_key, b"")) == 32
    assert chunk_id_hex(chunk_id(id_key, b"x")) == chunk_id(id_key, b"x").hex()
