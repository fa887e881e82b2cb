"""Key rings (reconciler.crypto.keyring) and picking a backup's key from one."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from reconciler.backup.opening import data_key_for
from reconciler.crypto.certificates import Certificate
from reconciler.crypto.envelope import new_data_key, wrap_data_key
from reconciler.crypto.keyring import load_key_ring
from reconciler.crypto.keys import (
    SupportedPrivateKey,
    certificate_bytes,
    create_key_pair,
    private_key_pem,
)
from reconciler.errors import CryptoError, WrongKeyError
from reconciler.repository.records import BackupRecord, BackupStatus

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
Pair = tuple[Certificate, SupportedPrivateKey]


@pytest.fixture(scope="module")
def first() -> Pair:
    return create_key_pair("ec-p256", "CN=backups 2025", 365, datetime.now(UTC))


@pytest.fixture(scope="module")
def second() -> Pair:
    return create_key_pair("ec-p384", "CN=backups 2026", 365, datetime.now(UTC))


def write_pair(folder: Path, name: str, pair: Pair, passphrase: bytes | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.cer").write_bytes(certificate_bytes(pair[0], der=False))
    key = folder / f"{name}.pem"
    key.write_bytes(private_key_pem(pair[1], passphrase))
    return key


def backup_wrapped_to(cert: Certificate, data_key: bytes) -> BackupRecord:
    return BackupRecord(
        id="20261125T120000Z-abc123",
        configuration="region-west",
        status=BackupStatus.SUCCEEDED,
        created_at=NOW,
        started_at=NOW,
        completed_at=NOW,
        trigger="scheduled",
        key_thumbprint=cert.thumbprint,
        sources=(),
        wrapped_key=wrap_data_key(data_key, cert),
    )


def test_a_key_folder_offers_every_key_and_skips_the_certificates_beside_them(
    tmp_path: Path, first: Pair, second: Pair
) -> None:
    write_pair(tmp_path / "keys", "2025", first)
    write_pair(tmp_path / "keys", "2026", second)
    ring = load_key_ring([], [tmp_path / "keys"], None)
    assert {k.public_key_sha256 for k in ring.keys} == {
        first[0].public_key_sha256,
        second[0].public_key_sha256,
    }
    assert ring.unusable == ()


def test_each_backup_gets_the_key_it_was_wrapped_to(
    tmp_path: Path, first: Pair, second: Pair
) -> None:
    ring = load_key_ring(
        [write_pair(tmp_path, "a", first), write_pair(tmp_path, "b", second)], [], None
    )
    for cert in (first[0], second[0]):
        data_key = new_data_key()
        assert data_key_for(backup_wrapped_to(cert, data_key), ring, {}) == data_key


def test_a_missing_key_names_the_certificate_the_backup_needs(
    tmp_path: Path, first: Pair, second: Pair
) -> None:
    ring = load_key_ring([write_pair(tmp_path, "a", second)], [], None)
    record = backup_wrapped_to(first[0], new_data_key())
    with pytest.raises(WrongKeyError) as info:
        data_key_for(record, ring, {second[0].public_key_sha256: second[0].thumbprint})
    message = str(info.value)
    assert f"encrypted to certificate {first[0].thumbprint}" in message
    assert f"belongs to certificate {second[0].thumbprint}" in message


def test_an_encrypted_key_in_a_folder_without_passphrase_is_named_when_it_is_needed(
    tmp_path: Path, first: Pair, second: Pair
) -> None:
    write_pair(tmp_path / "keys", "plain", second)
    locked = write_pair(tmp_path / "keys", "locked", first, passphrase=b"correct horse")
    ring = load_key_ring([], [tmp_path / "keys"], None)
    assert [k.public_key_sha256 for k in ring.keys] == [second[0].public_key_sha256]
    with pytest.raises(WrongKeyError) as info:
        data_key_for(backup_wrapped_to(first[0], new_data_key()), ring, {})
    assert f"{locked} is encrypted; pass --key-passphrase-env" in str(info.value)


def test_a_folder_whose_only_key_is_encrypted_asks_for_the_passphrase(
    tmp_path: Path, first: Pair
) -> None:
    write_pair(tmp_path / "keys", "locked", first, passphrase=b"correct horse")
    with pytest.raises(CryptoError, match="is encrypted; pass --key-passphrase-env"):
        load_key_ring([], [tmp_path / "keys"], None)
    ring = load_key_ring([], [tmp_path / "keys"], b"correct horse")
    assert [k.public_key_sha256 for k in ring.keys] == [first[0].public_key_sha256]


def test_a_key_named_with_key_must_load(tmp_path: Path, first: Pair) -> None:
    locked = write_pair(tmp_path, "locked", first, passphrase=b"correct horse")
    with pytest.raises(CryptoError, match="is encrypted; pass --key-passphrase-env"):
        load_key_ring([locked], [], None)
    with pytest.raises(CryptoError, match="does not exist"):
        load_key_ring([tmp_path / "nope.pem"], [], None)


def test_a_key_folder_must_exist_and_hold_key_files(tmp_path: Path, first: Pair) -> None:
    with pytest.raises(CryptoError, match=r"the key folder .* does not exist"):
        load_key_ring([], [tmp_path / "absent"], None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CryptoError, match=r"holds no \*\.pem, \*\.key, \*\.der file"):
        load_key_ring([], [tmp_path / "empty"], None)
    certs_only = tmp_path / "certs"
    certs_only.mkdir()
    (certs_only / "backup.pem").write_bytes(certificate_bytes(first[0], der=False))
    with pytest.raises(CryptoError, match="holds only certificates"):
        load_key_ring([], [certs_only], None)


def test_the_same_key_offered_twice_is_kept_once(tmp_path: Path, first: Pair) -> None:
    key = write_pair(tmp_path / "keys", "a", first)
    ring = load_key_ring([key], [tmp_path / "keys"], None)
    assert len(ring.keys) == 1
