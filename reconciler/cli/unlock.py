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
from reconciler.usecases.unlock import UnlockOutcome, UnlockReport, break_lock, find_lock


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
    found = find_lock(config)
    holder = found.holder
    if holder is not None and not force and nonce is None and sys.stdin.isatty():
        click.echo(f"{config.name} is locked by {holder.describe()}")
        nonce = click.prompt("Type the nonce of this lock to break it", default="")
    _say(break_lock(found, nonce, force), config_path)


def _say(report: UnlockReport, config_path: Path) -> None:
    """Print what unlocking did; exit 1 when it broke nothing it was asked to."""
    name, holder = report.configuration, report.holder
    if holder is None:
        click.echo(f"{name}: the repository is not locked")
    elif report.outcome is UnlockOutcome.WRONG_NONCE:
        fail(
            f"{name} is locked by {holder.describe()}; to break this lock run"
            f" `backupctl unlock -f {config_path} --nonce {holder.nonce}` (or --force)"
        )
    elif report.current is not None:  # CHANGED_HANDS
        fail(
            f"{name}: the lock changed hands meanwhile; it is now held by"
            f" {report.current.describe()}; nothing was broken"
        )
    else:
        click.echo(f"{name}: broke the lock held by {holder.describe()}")
