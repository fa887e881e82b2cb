"""``backupctl backups list|show``: what a repository holds."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import click

from reconciler.cli.common import config_option, handle_errors, load, pick_one
from reconciler.errors import BackupctlError, ObjectNotFoundError
from reconciler.reconcile.prepared import prepare
from reconciler.repository.records import BackupRecord
from reconciler.repository.store import Repository
from reconciler.spec.model import BackupConfiguration
from reconciler.timeutil import format_time


def backup_to_json(record: BackupRecord) -> dict[str, Any]:
    """The documented JSON form of a backup in ``backups list --output json``."""
    return {
        "id": record.id,
        "configuration": record.configuration,
        "status": str(record.status),
        "createdAt": format_time(record.created_at),
        "completedAt": format_time(record.completed_at) if record.completed_at else None,
        "durationSeconds": record.duration_seconds,
        "sizeBytes": record.size_bytes,
        "keyThumbprint": record.key_thumbprint,
        "trigger": record.trigger,
        "sources": [
            {"name": s.name, "status": str(s.status), "sizeBytes": s.size_bytes, "error": s.error}
            for s in record.sources
        ],
    }


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def open_repository(config: BackupConfiguration) -> Repository:
    """The configuration's repository; raises BackupctlError when it does not exist."""
    repository = prepare(config).repository
    if not repository.storage.root_exists() or not repository.is_initialized():
        raise BackupctlError(f"{config.name}: no repository exists at {config.storage.describe()}")
    return repository


_BACKUP_ID = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]*")


def find_backup(repository: Repository, backup_id: str) -> BackupRecord:
    """The manifest of ``backup_id`` ('latest' is the newest Succeeded one).

    Raises BackupctlError naming the backup when there is none."""
    if not _BACKUP_ID.fullmatch(backup_id):
        # Checked here: an id is used as a storage key, which must not be a path.
        raise BackupctlError(
            f"{backup_id!r} is not a backup id (like 20261125T120000Z-1a2b3c) nor 'latest'"
        )
    if backup_id == "latest":
        catalog = repository.read_catalog().backups
        usable = [b for b in catalog if str(b.status) == "Succeeded"]
        if not usable:
            raise BackupctlError(f"{repository.description} holds no Succeeded backup")
        backup_id = usable[-1].id
    try:
        return repository.read_manifest(backup_id)
    except ObjectNotFoundError:
        raise BackupctlError(f"{repository.description} has no backup {backup_id}") from None


@click.group()
def backups() -> None:
    """List and inspect backups."""


@backups.command("list")
@config_option
@click.option("--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
@handle_errors
def list_backups(config_path: Path, output: str) -> None:
    """Backups with status, time, duration, size and key thumbprint, oldest first."""
    configs = load(config_path, check_validity=False)
    records: list[BackupRecord] = []
    for config in configs:
        records.extend(open_repository(config).read_catalog().backups)
    if output == "json":
        click.echo(json.dumps({"backups": [backup_to_json(r) for r in records]}, indent=2))
        return
    # rich only here: importing it costs every other command a tenth of its start-up.
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for column in ("ID", "CONFIGURATION", "STATUS", "CREATED", "DURATION", "SIZE", "KEY"):
        table.add_column(column, no_wrap=True)
    for r in records:
        duration = f"{r.duration_seconds:.1f}s" if r.duration_seconds is not None else "-"
        table.add_row(
            r.id,
            r.configuration,
            str(r.status),
            format_time(r.created_at),
            duration,
            human_size(r.size_bytes),
            r.key_thumbprint,
        )
    if not records:
        click.echo("no backups")
        return
    Console(width=200, soft_wrap=True).print(table)


@backups.command("show")
@config_option
@click.argument("backup_id")
@click.option("--configuration", "-c", "name", help="Which configuration, when PATH holds several.")
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@handle_errors
def show_backup(config_path: Path, backup_id: str, name: str | None, output: str) -> None:
    """One backup with its per-source results."""
    config = pick_one(load(config_path, check_validity=False), name, config_path)
    record = find_backup(open_repository(config), backup_id)
    data = backup_to_json(record)
    if output == "json":
        click.echo(json.dumps(data, indent=2))
        return
    for field in (
        "id",
        "configuration",
        "status",
        "createdAt",
        "completedAt",
        "trigger",
        "keyThumbprint",
    ):
        click.echo(f"{field + ':':<15} {data[field]}")
    click.echo(f"{'size:':<15} {human_size(record.size_bytes)}")
    click.echo("sources:")
    for s in record.sources:
        detail = human_size(s.size_bytes) if s.error is None else s.error
        click.echo(f"  {s.name:<24} {s.kind:<8} {s.status:<10} {detail}")
