"""``backupctl unlock``: break a lock left by a dead process."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from reconciler.cli.common import (
    config_option,
    fail,
    handle_errors,
    load,
    pick_one,
)
from reconciler.reconcile.prepared import prepare
from reconciler.repository.layout import LOCK_KEY
from reconciler.repository.lock import read_lock


@click.command()
@config_option
@click.option("--configuration", "-c", "name", help="Which configuration, when PATH holds several.")
@click.option("--force", is_flag=True, help="Break the lock without asking for its nonce.")
@click.option("--nonce", help="The nonce of the lock to break, as shown in the locked message.")
@handle_errors
def unlock(config_path: Path, name: str | None, force: bool, nonce: str | None) -> None:
    """Break a repository lock left by a dead process."""
    configs = load(config_path, check_validity=False)
    config = pick_one(configs, name, config_path)
    storage = prepare(config).repository.storage
    holder = read_lock(storage)
    if holder is None:
        click.echo(f"{config.name}: the repository is not locked")
        return
    if not force and nonce is None and sys.stdin.isatty():
        click.echo(f"{config.name} is locked by {holder.describe()}")
        nonce = click.prompt("Type the nonce of this lock to break it", default="")
    if not force and nonce != holder.nonce:
        fail(
            f"{config.name} is locked by {holder.describe()}; to break this lock run"
            f" `backupctl unlock -f {config_path} --nonce {holder.nonce}` (or --force)"
        )
    # Read again: a lock that changed hands meanwhile is not the one the user saw.
    current = read_lock(storage)
    if current is not None and current.nonce != holder.nonce:
        fail(
            f"{config.name}: the lock changed hands meanwhile; it is now held by"
            f" {current.describe()}; nothing was broken"
        )
    storage.delete(LOCK_KEY)
    click.echo(f"{config.name}: broke the lock held by {holder.describe()}")
