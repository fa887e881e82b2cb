"""``backupctl restore``: cloud recovery with the offline private key."""

from __future__ import annotations

from pathlib import Path

import click

from reconciler.cli.common import config_option, fail, handle_errors, load, pick_one
from reconciler.cli.keyring import key_options, key_ring_from_options
from reconciler.cli.progress import TransferProgress
from reconciler.timeutil import format_time
from reconciler.usecases.restore import restore as restore_use_case
from reconciler.usecases.restore import select_restore


@click.command()
@config_option
@click.option("--backup", "backup_id", required=True, help="A backup id, or 'latest'.")
@key_options
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
    key_dirs: tuple[Path, ...],
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
    if to is not None:
        _check_folder(to)
    config = pick_one(load(config_path, check_validity=False), name, config_path)
    ring = key_ring_from_options(key_paths, key_dirs, key_passphrase_env)
    if ring is None:
        fail("restoring needs the private key: give --key KEYFILE or --key-dir DIR")
    selection = select_restore(config, backup_id, ring)
    record = selection.backup
    created = format_time(record.created_at)
    click.echo(f"restoring backup {record.id} ({record.status}, created {created})")
    sizes = selection.stored_sizes()

    def on_source(name: str) -> None:
        progress.finish()
        click.echo(f"  {name}: reading and verifying")
        progress.start(f"  {name}: reading", sizes.get(name))

    with TransferProgress() as progress:
        report = restore_use_case(
            selection, to, sources, force, on_source=on_source, on_bytes=progress.advance
        )
    for item in report.restored:
        click.echo(f"  {item.name}: restored to {item.target}")
    count = len(report.restored)
    click.echo(f"restored {count} source{'s' if count != 1 else ''} from {record.id}")


def _check_folder(to: Path) -> None:
    """Refuse a --to that is, or lies under, something other than a folder.

    Each source is restored into TO/<source>/: found only when creating that
    folder, a file there would be reported as 'file exists'."""
    for path in (to, *to.parents):
        if path.is_dir():
            return
        if path.exists() or path.is_symlink():
            what = "it" if path == to else str(path)
            kind = "a file" if path.is_file() else "not a folder"
            fail(f"the restore target {to} must be a folder, but {what} is {kind}")
