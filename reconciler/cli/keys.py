"""``backupctl keys create``: a self-signed encryption certificate and its private key."""

from __future__ import annotations

import os
from pathlib import Path

import click

from reconciler.cli.common import fail, handle_errors
from reconciler.crypto.keys import (
    DEFAULT_SUBJECT,
    KEY_ALGORITHMS,
    certificate_bytes,
    create_key_pair,
    private_key_pem,
    write_private_key_file,
)
from reconciler.timeutil import format_time, now_utc


@click.group()
def keys() -> None:
    """Encryption keys and certificates."""


@keys.command("create")
@click.option(
    "--cert",
    "cert_path",
    required=True,
    type=click.Path(path_type=Path),
    help="Where to write the public certificate.",
)
@click.option(
    "--key",
    "key_path",
    required=True,
    type=click.Path(path_type=Path),
    help="Where to write the private key (mode 0600).",
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
    cert_path: Path,
    key_path: Path,
    days: int,
    subject: str,
    algorithm: str,
    passphrase_env: str | None,
    der: bool,
) -> None:
    """Make a self-signed certificate (public) and its private key (keep offline)."""
    passphrase: bytes | None = None
    if passphrase_env:
        value = os.environ.get(passphrase_env)
        if not value:
            fail(f"--passphrase-env: the environment variable {passphrase_env} is not set or empty")
        passphrase = value.encode()
    if cert_path.exists():
        fail(f"{cert_path} already exists; choose another path or remove it first")
    certificate, private_key = create_key_pair(algorithm, subject, days, now_utc())
    write_private_key_file(key_path, private_key_pem(private_key, passphrase))
    try:
        with cert_path.open("xb") as out:
            out.write(certificate_bytes(certificate, der))
    except OSError as exc:
        key_path.unlink(missing_ok=True)
        fail(f"cannot write {cert_path}: {(exc.strerror or str(exc)).lower()}")
    click.echo(
        f"certificate: {cert_path}  (public: commit it and reference it in"
        " spec.encryption.certificate)"
    )
    click.echo(f"private key: {key_path}  (secret: move it offline; it is needed only to restore)")
    click.echo(f"thumbprint:  {certificate.thumbprint}")
    click.echo(
        f"key:         {certificate.key_description},"
        f" valid until {format_time(certificate.not_after)}"
    )
