"""``backupctl keys create``: a self-signed encryption certificate and its private key,
and the index key backup hosts use to find data already stored."""

from __future__ import annotations

import os
from pathlib import Path

import click
from click.core import ParameterSource

from reconciler.cli.common import fail, handle_errors
from reconciler.crypto.keys import (
    DEFAULT_SUBJECT,
    KEY_ALGORITHMS,
    certificate_bytes,
    create_key_pair,
    private_key_pem,
    write_private_key_file,
    write_secret_file,
)
from reconciler.dedup.keys import IndexKey
from reconciler.timeutil import format_time, now_utc


@click.group()
def keys() -> None:
    """Encryption keys and certificates."""


@keys.command("create")
@click.option(
    "--cert",
    "cert_path",
    type=click.Path(path_type=Path),
    help="Where to write the public certificate (with --key).",
)
@click.option(
    "--key",
    "key_path",
    type=click.Path(path_type=Path),
    help="Where to write the private key (mode 0600; with --cert).",
)
@click.option(
    "--index-key",
    "index_key_path",
    type=click.Path(path_type=Path),
    help="Where to write a new index key (mode 0600), for spec.encryption.indexKey.",
)
@click.option("--days", default=730, show_default=True, type=click.IntRange(1, 36500))
@click.option("--subject", default=DEFAULT_SUBJECT, show_default=True)
@click.option(
    "--algorithm", type=click.Choice(KEY_ALGORITHMS), default="rsa-3072", show_default=True
)
@click.option(
    "--passphrase-env", help="Encrypt the private key with the passphrase in this variable."
)
@click.option("--der", is_flag=True, help="Write the certificate as DER instead of PEM.")
@handle_errors
def create(
    cert_path: Path | None,
    key_path: Path | None,
    index_key_path: Path | None,
    days: int,
    subject: str,
    algorithm: str,
    passphrase_env: str | None,
    der: bool,
) -> None:
    """Make a self-signed certificate (public) and its private key (keep offline),
    an index key for backup hosts (--index-key), or all three."""
    _check_outputs(cert_path, key_path, index_key_path)
    passphrase: bytes | None = None
    if passphrase_env:
        value = os.environ.get(passphrase_env)
        if not value:
            fail(f"--passphrase-env: the environment variable {passphrase_env} is not set or empty")
        passphrase = value.encode()
    for path in (cert_path, key_path, index_key_path):
        # Refused up front, before a key pair is generated; the exclusive writes
        # below and their clean-up alone would leave the same files, only later.
        if path is not None and (path.exists() or path.is_symlink()):
            fail(f"{path} already exists; choose another path or remove it first")
    if index_key_path is not None:
        secret = IndexKey.generate().to_base64()
        write_secret_file(index_key_path, f"{secret}\n".encode("ascii"), "index key file")
    if cert_path is not None and key_path is not None:
        try:
            lines = _create_pair(cert_path, key_path, days, subject, algorithm, passphrase, der)
        except BaseException:
            if index_key_path is not None:
                index_key_path.unlink(missing_ok=True)
            raise
        click.echo(lines)
    if index_key_path is not None:
        click.echo(
            f"index key:   {index_key_path}  (secret: give it to backup hosts in"
            " spec.encryption.indexKey; it decrypts nothing)"
        )


def _check_outputs(cert: Path | None, key: Path | None, index_key: Path | None) -> None:
    if (cert is None) != (key is None):
        fail("give --cert and --key together: they are the two halves of one key pair")
    if cert is None and index_key is None:
        fail("give --cert and --key (a key pair), --index-key FILE (an index key), or all three")
    given = [p.absolute() for p in (cert, key, index_key) if p is not None]
    if len(set(given)) != len(given):
        fail("--cert, --key and --index-key must name different files")
    if cert is None:
        context = click.get_current_context()
        for name in ("days", "subject", "algorithm", "passphrase_env", "der"):
            if context.get_parameter_source(name) is ParameterSource.COMMANDLINE:
                option = "--" + name.replace("_", "-")
                fail(f"{option} is about the key pair: give it with --cert and --key")


def _create_pair(
    cert_path: Path,
    key_path: Path,
    days: int,
    subject: str,
    algorithm: str,
    passphrase: bytes | None,
    der: bool,
) -> str:
    """Write the certificate and its private key; return the lines that describe them."""
    certificate, private_key = create_key_pair(algorithm, subject, days, now_utc())
    write_private_key_file(key_path, private_key_pem(private_key, passphrase))
    try:
        with cert_path.open("xb") as out:
            out.write(certificate_bytes(certificate, der))
    except OSError as exc:
        key_path.unlink(missing_ok=True)
        fail(f"cannot write {cert_path}: {(exc.strerror or str(exc)).lower()}")
    return "\n".join(
        [
            f"certificate: {cert_path}  (public: commit it and reference it in"
            " spec.encryption.certificate)",
            f"private key: {key_path}  (secret: move it offline; it is needed only to restore)",
            f"thumbprint:  {certificate.thumbprint}",
            f"key:         {certificate.key_description},"
            f" valid until {format_time(certificate.not_after)}",
        ]
    )
