"""Loading and checking certificates and private keys (reconciler.crypto.certificates/keys)."""

from __future__ import annotations

import hashlib
import os
import stat
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import NameOID

from reconciler.crypto.certificates import (
    Certificate,
    certificate_validity_problem,
    expires_within,
    load_certificate,
    parse_certificate,
    thumbprint_of,
)
from reconciler.crypto.keys import (
    KEY_ALGORITHMS,
    certificate_bytes,
    create_key_pair,
    load_private_key,
    private_key_pem,
    write_private_key_file,
)
from reconciler.errors import CryptoError

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
PASSPHRASE = b"correct horse battery staple"


def self_signed(
    key: CertificateIssuerPrivateKeyTypes,
    *,
    not_before: datetime = NOW - timedelta(days=1),
    not_after: datetime = NOW + timedelta(days=365),
    common_name: str = "test backups",
) -> x509.Certificate:
    """A minimal self-signed certificate for any key type the library can sign with."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    digest = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(key, digest)
    )


def pem_of(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def der_of(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def key_bytes(
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey,
    encoding: serialization.Encoding = serialization.Encoding.PEM,
    fmt: serialization.PrivateFormat = serialization.PrivateFormat.PKCS8,
    passphrase: bytes | None = None,
) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(encoding, fmt, encryption)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# --- certificates ---------------------------------------------------------------------------


def test_a_pem_certificate_loads_with_its_subject_validity_and_key_description(
    tmp_path: Path, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    x = self_signed(ec_key, common_name="region west backups")
    cert = load_certificate(write(tmp_path, "backup.cer", pem_of(x)))
    assert cert.der == der_of(x)
    assert cert.subject == "CN=region west backups"
    assert cert.not_before == NOW - timedelta(days=1)
    assert cert.not_after == NOW + timedelta(days=365)
    assert cert.not_before.tzinfo is not None
    assert cert.key_description == "EC P-256"
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)


def test_a_der_certificate_loads_the_same_as_its_pem_form(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey
) -> None:
    x = self_signed(rsa_key)
    from_pem = load_certificate(write(tmp_path, "a.pem", pem_of(x)))
    from_der = load_certificate(write(tmp_path, "a.cer", der_of(x)))
    assert from_pem == from_der
    assert from_der.key_description == "RSA 2048"


def test_the_thumbprint_is_the_uppercase_sha1_of_the_der(
    tmp_path: Path, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    der = der_of(self_signed(ec_key))
    expected = hashlib.sha1(der).hexdigest().upper()
    assert load_certificate(write(tmp_path, "a.cer", der)).thumbprint == expected
    assert thumbprint_of(der) == expected


def test_a_pem_certificate_with_crlf_line_ends_and_leading_text_loads(
    tmp_path: Path, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    x = self_signed(ec_key)
    data = b"Bag Attributes\r\n    friendlyName: backups\r\n" + pem_of(x).replace(b"\n", b"\r\n")
    assert load_certificate(write(tmp_path, "a.pem", data)).der == der_of(x)


@pytest.mark.parametrize(
    ("curve", "description"), [(ec.SECP256R1(), "EC P-256"), (ec.SECP384R1(), "EC P-384")]
)
def test_both_supported_curves_load(
    tmp_path: Path, curve: ec.EllipticCurve, description: str
) -> None:
    x = self_signed(ec.generate_private_key(curve))
    assert load_certificate(write(tmp_path, "a.pem", pem_of(x))).key_description == description


def test_the_public_key_fingerprint_matches_the_private_key_it_belongs_to(
    tmp_path: Path, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    cert = load_certificate(write(tmp_path, "a.pem", pem_of(self_signed(ec_key))))
    key = load_private_key(write(tmp_path, "k.pem", key_bytes(ec_key)), None)
    assert cert.public_key_sha256 == key.public_key_sha256
    assert len(cert.public_key_sha256) == 64
    assert cert.public_key_sha256 == cert.public_key_sha256.lower()


@pytest.mark.parametrize(
    "fmt",
    [
        serialization.PrivateFormat.PKCS8,
        serialization.PrivateFormat.TraditionalOpenSSL,
    ],
)
@pytest.mark.parametrize("encrypted", [False, True])
def test_a_certificate_file_that_also_holds_a_private_key_is_refused(
    tmp_path: Path,
    rsa_key: rsa.RSAPrivateKey,
    fmt: serialization.PrivateFormat,
    encrypted: bool,
) -> None:
    key_pem = key_bytes(rsa_key, fmt=fmt, passphrase=PASSPHRASE if encrypted else None)
    path = write(tmp_path, "bundle.pem", pem_of(self_signed(rsa_key)) + key_pem)
    with pytest.raises(CryptoError) as info:
        load_certificate(path)
    message = str(info.value)
    assert str(path) in message
    assert "only the public certificate belongs on the backup host" in message


def test_a_der_private_key_given_as_the_certificate_is_refused(
    tmp_path: Path, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    path = write(tmp_path, "key.der", key_bytes(ec_key, serialization.Encoding.DER))
    with pytest.raises(CryptoError, match="only the public certificate belongs on the backup host"):
        load_certificate(path)


def test_a_file_with_two_certificates_is_refused(
    tmp_path: Path, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    data = pem_of(self_signed(ec_key)) + pem_of(self_signed(ec_key, common_name="other"))
    path = write(tmp_path, "chain.pem", data)
    with pytest.raises(CryptoError, match="contains 2 certificates") as info:
        load_certificate(path)
    assert str(path) in str(info.value)


def test_an_rsa_1024_certificate_is_refused_saying_its_size(tmp_path: Path) -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    path = write(tmp_path, "small.cer", der_of(self_signed(small)))
    with pytest.raises(CryptoError, match=r"uses RSA 1024, but backups need RSA >= 2048") as info:
        load_certificate(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("curve", "name"), [(ec.SECP521R1(), "secp521r1"), (ec.SECP256K1(), "secp256k1")]
)
def test_a_certificate_on_an_unsupported_curve_is_refused_naming_the_curve(
    tmp_path: Path, curve: ec.EllipticCurve, name: str
) -> None:
    path = write(tmp_path, "a.pem", pem_of(self_signed(ec.generate_private_key(curve))))
    with pytest.raises(CryptoError, match=f"uses EC {name}, but backups need"):
        load_certificate(path)


def test_an_ed25519_certificate_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "a.pem", pem_of(self_signed(ed25519.Ed25519PrivateKey.generate())))
    with pytest.raises(CryptoError, match="uses Ed25519"):
        load_certificate(path)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"certainly not a certificate",
        os.urandom(300),
        b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    ],
    ids=["empty", "text", "random", "public-key", "bad-base64-cert"],
)
def test_a_file_that_is_not_a_certificate_is_refused(tmp_path: Path, data: bytes) -> None:
    path = write(tmp_path, "junk.cer", data)
    with pytest.raises(CryptoError, match=r"is not a PEM or DER X\.509 certificate") as info:
        load_certificate(path)
    assert str(path) in str(info.value)


def test_a_missing_certificate_file_is_reported_by_name(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.cer"
    with pytest.raises(CryptoError, match="does not exist") as info:
        load_certificate(path)
    assert str(path) in str(info.value)


def test_a_huge_file_given_as_the_certificate_is_refused_without_reading_it_all(
    tmp_path: Path,
) -> None:
    path = tmp_path / "disk.img"
    with path.open("wb") as out:
        out.truncate(1 << 30)  # sparse: no disk space used
    with pytest.raises(CryptoError, match="too large for a key"):
        load_certificate(path)


def test_a_directory_given_as_the_certificate_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CryptoError, match="is a directory"):
        load_certificate(tmp_path)


# --- validity -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def year_cert(ec_key: ec.EllipticCurvePrivateKey) -> Certificate:
    """Valid from NOW for one year."""
    x = self_signed(ec_key, not_before=NOW, not_after=NOW + timedelta(days=365))
    return parse_certificate(der_of(x), "test")


def test_a_certificate_inside_its_validity_period_has_no_problem(year_cert: Certificate) -> None:
    assert certificate_validity_problem(year_cert, NOW + timedelta(days=30)) is None
    assert certificate_validity_problem(year_cert, year_cert.not_before) is None
    assert certificate_validity_problem(year_cert, year_cert.not_after) is None


def test_an_expired_certificate_is_reported_with_its_expiry_time(year_cert: Certificate) -> None:
    problem = certificate_validity_problem(year_cert, year_cert.not_after + timedelta(seconds=1))
    assert problem is not None
    assert "expired on 2027-11-25T12:00:00Z" in problem
    assert year_cert.thumbprint in problem


def test_a_certificate_that_is_not_yet_valid_is_reported(year_cert: Certificate) -> None:
    problem = certificate_validity_problem(year_cert, NOW - timedelta(minutes=1))
    assert problem is not None
    assert "is not valid before 2026-11-25T12:00:00Z" in problem


def test_validity_is_judged_in_utc_whatever_the_timezone_of_now(year_cert: Certificate) -> None:
    plus_two = timezone(timedelta(hours=2))
    # 13:59 at +02:00 is 11:59 UTC, one minute before the certificate starts.
    assert certificate_validity_problem(year_cert, datetime(2026, 11, 25, 13, 59, tzinfo=plus_two))
    assert not certificate_validity_problem(
        year_cert, datetime(2026, 11, 25, 14, 0, tzinfo=plus_two)
    )


def test_a_naive_now_is_a_programming_error(year_cert: Certificate) -> None:
    with pytest.raises(ValueError):
        certificate_validity_problem(year_cert, datetime(2026, 11, 25))


def test_expires_within_counts_days_up_to_the_expiry(year_cert: Certificate) -> None:
    thirty_days_before = year_cert.not_after - timedelta(days=30)
    assert expires_within(year_cert, thirty_days_before, 30)
    assert not expires_within(year_cert, thirty_days_before - timedelta(seconds=1), 30)
    assert expires_within(year_cert, year_cert.not_after + timedelta(days=1), 30)


# --- creating key pairs ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("algorithm", "description"),
    [
        ("rsa-3072", "RSA 3072"),
        ("rsa-4096", "RSA 4096"),
        ("ec-p256", "EC P-256"),
        ("ec-p384", "EC P-384"),
    ],
)
def test_create_key_pair_makes_a_matching_self_signed_encryption_certificate(
    tmp_path: Path, algorithm: str, description: str
) -> None:
    cert, key = create_key_pair(algorithm, "CN=backupctl backups,O=Contoso", 730, NOW)
    assert cert.key_description == description
    assert cert.subject == "CN=backupctl backups,O=Contoso"
    assert cert.not_before <= NOW
    assert cert.not_after == NOW + timedelta(days=730)
    assert certificate_validity_problem(cert, NOW) is None

    x = x509.load_der_x509_certificate(cert.der)
    assert x.issuer == x.subject
    x.verify_directly_issued_by(x)
    basic = x.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca is False
    usage = x.extensions.get_extension_for_class(x509.KeyUsage).value
    if algorithm.startswith("rsa"):
        assert usage.key_encipherment and not usage.key_agreement
    else:
        assert usage.key_agreement and not usage.key_encipherment

    loaded = load_private_key(write(tmp_path, "k.pem", private_key_pem(key, None)), None)
    assert loaded.public_key_sha256 == cert.public_key_sha256
    assert loaded.description == description


def test_every_advertised_algorithm_is_accepted() -> None:
    assert set(KEY_ALGORITHMS) == {"rsa-3072", "rsa-4096", "ec-p256", "ec-p384"}


@pytest.mark.parametrize(
    ("algorithm", "subject", "days", "match"),
    [
        ("rsa-1024", "CN=x", 365, "key algorithm 'rsa-1024' is not supported"),
        ("ec-p256", "not a name", 365, "is not an RFC 4514 name"),
        ("ec-p256", "O=Contoso", 365, "needs a common name"),
        ("ec-p256", "CN=x", 0, "at least 1 day"),
    ],
)
def test_create_key_pair_rejects_bad_arguments_with_a_sentence(
    algorithm: str, subject: str, days: int, match: str
) -> None:
    with pytest.raises(CryptoError, match=match):
        create_key_pair(algorithm, subject, days, NOW)


@pytest.mark.parametrize("der", [False, True])
def test_certificate_bytes_load_back_to_the_same_certificate(tmp_path: Path, der: bool) -> None:
    cert, _ = create_key_pair("ec-p256", "CN=backupctl backups", 30, NOW)
    data = certificate_bytes(cert, der=der)
    assert data.startswith(b"-----BEGIN CERTIFICATE-----") is not der
    assert load_certificate(write(tmp_path, "out.cer", data)) == cert


# --- private keys ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoding", "fmt"),
    [
        (serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8),
        (serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL),
        (serialization.Encoding.DER, serialization.PrivateFormat.PKCS8),
        (serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL),
    ],
)
def test_a_private_key_loads_from_pem_or_der_in_pkcs8_or_traditional_form(
    tmp_path: Path,
    rsa_key: rsa.RSAPrivateKey,
    encoding: serialization.Encoding,
    fmt: serialization.PrivateFormat,
) -> None:
    path = write(tmp_path, "key", key_bytes(rsa_key, encoding, fmt))
    loaded = load_private_key(path, None)
    assert loaded.path == path
    assert loaded.description == "RSA 2048"
    assert loaded.key.private_numbers() == rsa_key.private_numbers()


def test_a_certificate_in_the_same_pem_file_as_the_key_is_ignored(
    tmp_path: Path, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    x = self_signed(ec_key)
    path = write(tmp_path, "both.pem", pem_of(x) + key_bytes(ec_key))
    loaded = load_private_key(path, None)
    assert loaded.public_key_sha256 == parse_certificate(der_of(x), "t").public_key_sha256


@pytest.mark.parametrize(
    "fmt", [serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL]
)
def test_an_encrypted_private_key_loads_with_the_right_passphrase(
    tmp_path: Path, ec_key: ec.EllipticCurvePrivateKey, fmt: serialization.PrivateFormat
) -> None:
    path = write(tmp_path, "k.pem", key_bytes(ec_key, fmt=fmt, passphrase=PASSPHRASE))
    assert load_private_key(path, PASSPHRASE).description == "EC P-256"


def test_an_encrypted_der_private_key_loads_with_the_right_passphrase(
    tmp_path: Path, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    data = key_bytes(ec_key, serialization.Encoding.DER, passphrase=PASSPHRASE)
    assert load_private_key(write(tmp_path, "k.der", data), PASSPHRASE).description == "EC P-256"


@pytest.mark.parametrize(
    "fmt", [serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL]
)
def test_a_wrong_passphrase_is_reported_without_revealing_it(
    tmp_path: Path, ec_key: ec.EllipticCurvePrivateKey, fmt: serialization.PrivateFormat
) -> None:
    path = write(tmp_path, "k.pem", key_bytes(ec_key, fmt=fmt, passphrase=PASSPHRASE))
    wrong = b"tr0ub4dor&3"
    with pytest.raises(CryptoError, match="the passphrase is wrong") as info:
        load_private_key(path, wrong)
    assert str(path) in str(info.value)
    assert wrong.decode() not in str(info.value)
    assert PASSPHRASE.decode() not in str(info.value)


def test_an_encrypted_key_without_a_passphrase_says_how_to_give_one(
    tmp_path: Path, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    path = write(tmp_path, "k.pem", key_bytes(ec_key, passphrase=PASSPHRASE))
    with pytest.raises(CryptoError, match="is encrypted; pass --key-passphrase-env VAR") as info:
        load_private_key(path, None)
    assert str(path) in str(info.value)


def test_a_passphrase_given_for_an_unencrypted_key_is_not_needed_and_ignored(
    tmp_path: Path, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    path = write(tmp_path, "k.pem", key_bytes(ec_key))
    assert load_private_key(path, PASSPHRASE).description == "EC P-256"


def test_a_certificate_given_as_the_private_key_is_refused(
    tmp_path: Path, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    path = write(tmp_path, "backup.cer", pem_of(self_signed(ec_key)))
    with pytest.raises(CryptoError, match="holds a certificate but no private key"):
        load_private_key(path, None)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"garbage",
        os.urandom(200),
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    ],
    ids=["empty", "text", "random", "bad-pem-key"],
)
def test_a_file_that_is_not_a_private_key_is_refused(tmp_path: Path, data: bytes) -> None:
    path = write(tmp_path, "k.pem", data)
    with pytest.raises(CryptoError, match="is not a PEM or DER private key") as info:
        load_private_key(path, None)
    assert str(path) in str(info.value)


def test_a_missing_private_key_file_is_reported_by_name(tmp_path: Path) -> None:
    path = tmp_path / "missing.pem"
    with pytest.raises(CryptoError, match="does not exist") as info:
        load_private_key(path, None)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("make", "described"),
    [
        (lambda: rsa.generate_private_key(public_exponent=65537, key_size=1024), "RSA 1024"),
        (lambda: ec.generate_private_key(ec.SECP521R1()), "EC secp521r1"),
        (ed25519.Ed25519PrivateKey.generate, "Ed25519"),
    ],
    ids=["rsa-1024", "p-521", "ed25519"],
)
def test_an_unsupported_private_key_type_is_refused_saying_what_it_is(
    tmp_path: Path, make: object, described: str
) -> None:
    assert callable(make)
    path = write(tmp_path, "k.pem", key_bytes(make()))
    with pytest.raises(CryptoError, match=f"uses {described}, but backups need"):
        load_private_key(path, None)


def test_private_key_pem_with_a_passphrase_is_encrypted_pkcs8(
    ec_key: ec.EllipticCurvePrivateKey,
) -> None:
    assert private_key_pem(ec_key, None).startswith(b"-----BEGIN PRIVATE KEY-----")
    assert private_key_pem(ec_key, PASSPHRASE).startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")


def test_an_empty_passphrase_is_refused_rather_than_writing_an_unprotected_key(
    ec_key: ec.EllipticCurvePrivateKey,
) -> None:
    with pytest.raises(CryptoError, match="passphrase is empty"):
        private_key_pem(ec_key, b"")


def test_the_private_key_file_is_created_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "backup.pem"
    old_umask = os.umask(0)  # even a permissive umask must not widen the mode
    try:
        write_private_key_file(path, b"key material")
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes() == b"key material"


def test_an_existing_private_key_file_is_never_overwritten(tmp_path: Path) -> None:
    path = write(tmp_path, "backup.pem", b"the old key")
    with pytest.raises(CryptoError, match="already exists; refusing to overwrite it") as info:
        write_private_key_file(path, b"a new key")
    assert str(path) in str(info.value)
    assert path.read_bytes() == b"the old key"


def test_a_symlink_at_the_private_key_path_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    link = tmp_path / "backup.pem"
    link.symlink_to(target)
    with pytest.raises(CryptoError, match="already exists"):
        write_private_key_file(link, b"key material")
    assert not target.exists()


def test_a_private_key_file_in_a_missing_directory_is_reported(tmp_path: Path) -> None:
    with pytest.raises(CryptoError, match="cannot be created"):
        write_private_key_file(tmp_path / "no" / "such" / "k.pem", b"x")
