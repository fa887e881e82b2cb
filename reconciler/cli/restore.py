"""``backupctl restore``: cloud recovery with the offline private key."""

from __future__ import annotations

import os
from pathlib import Path

import click

from reconciler.backup.restore import RestoreRequest, data_key_for, restore_backup
from reconciler.cli.backups import find_backup, open_repository
from reconciler.cli.common import config_option, fail, handle_errors, load, pick_one
from reconciler.crypto.keys import PrivateKey, load_private_key
from reconciler.timeutil import format_time


def load_keys(paths: tuple[Path, ...], passphrase_env: str | None) -> list[PrivateKey]:
    passphrase: bytes | None = None
    if passphrase_env:
        value = os.environ.get(passphrase_env)
        if value is None:
            fail(f"--key-passphrase-env: the environment variable {passphrase_env} is not set")
        passphrase = value.encode()
    return [load_private_key(p, passphrase) for p in paths]


@click.command()
@config_option
@click.option("--backup", "backup_id", required=True, help="A backup id, or 'latest'.")
@click.option(
    "--key",
    "key_paths",
    required=True,
    multiple=True,
    type=click.Path(path_type=Path),
    help="The private key (PEM or DER); repeat to offer several.",
)
@click.option("--key-passphrase-env", help="Environment variable holding the key's passphrase.")
@click.option("--to", "to", type=click.Path(path_type=Path), help="Restore under DIR/<source>/.")
@click.option("--in-place", is_flag=True, help="Restore to the configured locations.")
@click.option("--source", "sources", multiple=True, help="Restore only this source (repeatable).")
@click.option("--force", is_flag=True, help="Replace non-empty targets.")
@click.option("--configuration", "-c", "name", help="Which configuration, when PATH holds several.")
@handle_errors
def restore(
    config_path: Path,
    backup_id: str,
    key_paths: tuple[Path, ...],
    key_passphrase_env: str | None,
    to: Path | None,
    in_place: bool,
    sources: tuple[str, ...],
    force: bool,
    name: str | None,
) -> None:
    """Decrypt a backup with the private key and restore it."""
    if (to is None) == (not in_place):
        fail("give exactly one of --to DIR and --in-place")
    config = pick_one(load(config_path, check_validity=False), name, config_path)
    keys = load_keys(key_paths, key_passphrase_env)
    repository = open_repository(config)
    record = find_backup(repository, backup_id)
    settings = repository.read_settings()
    known = {k.public_key_sha256: k.thumbprint for k in settings.key_history} if settings else {}
    data_key = data_key_for(record, keys, known)
    request = RestoreRequest(to=to.resolve() if to else None, sources=sources, force=force)
    created = format_time(record.created_at)
    click.echo(f"restoring backup {record.id} ({record.status}, created {created})")
    restored = restore_backup(
        repository,
        config,
        record,
        data_key,
        request,
        on_source=lambda s: click.echo(f"  {s}: reading and verifying"),
    )
    for item in restored:
        click.echo(f"  {item.name}: restored to {item.target}")
    click.echo(
        f"restored {len(restored)} source{'s' if len(restored) != 1 else ''} from {record.id}"
    )
