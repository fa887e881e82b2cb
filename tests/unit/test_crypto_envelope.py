"""Wrapping a backup's data key to a certificate (reconciler.crypto.envelope)."""

from __future__ import annotations

import base64
import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from reconciler.crypto.certificates import Certificate
from reconciler.crypto.envelope import (
    SCHEME_ECDH,
    SCHEME_RSA,
    WrappedKey,
    new_data_key,
    unwrap_data_key,
    wrap_data_key,
)
from reconciler.crypto.keys import (
    PrivateKey,
    create_key_pair,
    load_private_key,
    private_key_pem,
)
from reconciler.errors import IntegrityError, WrongKeyError

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
ALGORITHMS = ["rsa-3072", "ec-p256", "ec-p384"]


@dataclasses.dataclass(frozen=True)
class Pair:
    cert: Certificate
    key: PrivateKey


def make_pair(tmp_path: Path, algorithm: str, name: str = "key.pem") -> Pair:
    cert, key = create_key_pair(algorithm, "CN=backupctl backups", 365, NOW)
    path = tmp_path / name
    path.write_bytes(private_key_pem(key, None))
    return Pair(cert, load_private_key(path, None))


@pytest.fixture(scope="module", params=ALGORITHMS)
def pair(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Pair:
    return make_pair(tmp_path_factory.mktemp("keys"), request.param)


def flip(data: bytes, index: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


def test_new_data_keys_are_32_random_bytes() -> None:
    keys = {new_data_key() for _ in range(16)}
    assert len(keys) == 16
    assert all(len(k) == 32 for k in keys)


def test_a_wrapped_data_key_unwraps_with_the_certificates_private_key(pair: Pair) -> None:
    data_key = new_data_key()
    wrapped = wrap_data_key(data_key, pair.cert)
    assert unwrap_data_key(wrapped, pair.key) == data_key


def test_the_wrapped_record_names_the_certificate_and_its_scheme(pair: Pair) -> None:
    wrapped = wrap_data_key(new_data_key(), pair.cert)
    assert wrapped.thumbprint == pair.cert.thumbprint
    assert wrapped.public_key_sha256 == pair.cert.public_key_sha256
    if pair.cert.key_description.startswith("RSA"):
        assert wrapped.scheme == SCHEME_RSA
        assert wrapped.ephemeral_public_key is None
        assert len(wrapped.wrapped) == 3072 // 8
    else:
        assert wrapped.scheme == SCHEME_ECDH
        assert wrapped.ephemeral_public_key is not None
        assert len(wrapped.wrapped) == 12 + 32 + 16


def test_wrapping_the_same_key_twice_gives_different_records(pair: Pair) -> None:
    data_key = new_data_key()
    first = wrap_data_key(data_key, pair.cert)
    second = wrap_data_key(data_key, pair.cert)
    assert first.wrapped != second.wrapped
    assert data_key not in first.wrapped


def test_a_data_key_of_the_wrong_length_is_a_programming_error(pair: Pair) -> None:
    with pytest.raises(ValueError):
        wrap_data_key(b"short", pair.cert)


def test_unwrapping_with_another_key_names_the_certificate_and_the_key_file(
    pair: Pair, tmp_path: Path
) -> None:
    other = make_pair(tmp_path, "ec-p256", "other.pem")
    wrapped = wrap_data_key(new_data_key(), pair.cert)
    with pytest.raises(WrongKeyError) as info:
        unwrap_data_key(wrapped, other.key)
    message = str(info.value)
    assert f"wrapped to certificate {pair.cert.thumbprint}" in message
    assert f"key file {other.key.path} does not belong to it" in message


def test_a_damaged_wrapped_key_is_an_integrity_error_not_a_wrong_key(pair: Pair) -> None:
    wrapped = wrap_data_key(new_data_key(), pair.cert)
    for index in (0, len(wrapped.wrapped) // 2, len(wrapped.wrapped) - 1):
        damaged = dataclasses.replace(wrapped, wrapped=flip(wrapped.wrapped, index))
        with pytest.raises(IntegrityError, match=r"wrapped data key .* is damaged"):
            unwrap_data_key(damaged, pair.key)


def test_a_truncated_wrapped_key_is_an_integrity_error(pair: Pair) -> None:
    wrapped = wrap_data_key(new_data_key(), pair.cert)
    for cut in (b"", wrapped.wrapped[:10], wrapped.wrapped[:-1]):
        with pytest.raises(IntegrityError):
            unwrap_data_key(dataclasses.replace(wrapped, wrapped=cut), pair.key)


def test_an_ecdh_record_is_bound_to_its_thumbprint_and_ephemeral_key(tmp_path: Path) -> None:
    ec_pair = make_pair(tmp_path, "ec-p256")
    wrapped = wrap_data_key(new_data_key(), ec_pair.cert)
    assert wrapped.ephemeral_public_key is not None
    other_thumbprint = dataclasses.replace(wrapped, thumbprint="0" * 40)
    other_point = dataclasses.replace(
        wrapped,
        ephemeral_public_key=wrap_data_key(new_data_key(), ec_pair.cert).ephemeral_public_key,
    )
    bad_point = dataclasses.replace(
        wrapped, ephemeral_public_key=flip(wrapped.ephemeral_public_key, 5)
    )
    for damaged in (other_thumbprint, other_point, bad_point):
        with pytest.raises(IntegrityError):
            unwrap_data_key(damaged, ec_pair.key)


def test_a_record_whose_scheme_does_not_fit_the_key_is_an_integrity_error(pair: Pair) -> None:
    wrapped = wrap_data_key(new_data_key(), pair.cert)
    relabelled = dataclasses.replace(
        wrapped,
        scheme=SCHEME_ECDH if wrapped.scheme == SCHEME_RSA else SCHEME_RSA,
        ephemeral_public_key=b"\x04" + bytes(64) if wrapped.scheme == SCHEME_RSA else None,
    )
    with pytest.raises(IntegrityError):
        unwrap_data_key(relabelled, pair.key)


def test_the_json_form_round_trips_and_has_a_stable_key_order(pair: Pair) -> None:
    wrapped = wrap_data_key(new_data_key(), pair.cert)
    record = wrapped.to_json()
    expected = ["scheme", "thumbprint", "publicKeySha256", "wrapped"]
    if wrapped.scheme == SCHEME_ECDH:
        expected.append("ephemeralPublicKey")
    assert list(record) == expected
    assert all(isinstance(v, str) for v in record.values())
    assert WrappedKey.from_json(json.loads(json.dumps(record))) == wrapped


def test_the_json_form_never_contains_the_data_key(pair: Pair) -> None:
    data_key = new_data_key()
    text = json.dumps(wrap_data_key(data_key, pair.cert).to_json())
    assert base64.b64encode(data_key).decode() not in text
    assert data_key.hex() not in text


@pytest.fixture(scope="module")
def ecdh_record(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    ec_pair = make_pair(tmp_path_factory.mktemp("k"), "ec-p256")
    return wrap_data_key(new_data_key(), ec_pair.cert).to_json()


MALFORMED: list[tuple[str, object]] = [
    ("not an object", ["a", "list"]),
    ("missing scheme", {"scheme": None}),
    ("unknown scheme", {"scheme": "ROT13"}),
    ("lowercase thumbprint", {"thumbprint": "ab" * 20}),
    ("short thumbprint", {"thumbprint": "AB"}),
    ("uppercase key hash", {"publicKeySha256": "AB" * 32}),
    ("number as text", {"wrapped": 42}),
    ("bad base64", {"wrapped": "not*base64"}),
    ("empty wrapped key", {"wrapped": ""}),
    ("non-ascii base64", {"wrapped": "åäö"}),
    ("missing ephemeral key", {"ephemeralPublicKey": None}),
    ("ephemeral key with rsa", {"scheme": SCHEME_RSA}),
    ("unknown field", {"comment": "hello"}),
]


@pytest.mark.parametrize(("case", "change"), MALFORMED, ids=[c for c, _ in MALFORMED])
def test_a_malformed_json_record_is_an_integrity_error_naming_its_origin(
    ecdh_record: dict[str, str], case: str, change: object
) -> None:
    if isinstance(change, dict):
        record: object = {k: v for k, v in {**ecdh_record, **change}.items() if v is not None}
    else:
        record = change
    with pytest.raises(IntegrityError, match=r"backups/B1/manifest\.json is malformed"):
        WrappedKey.from_json(record, "backups/B1/manifest.json")
