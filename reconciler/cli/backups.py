"""``backupctl backups list|show``: what a repository holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from reconciler.cli.common import config_option, handle_errors, load, pick_one
from reconciler.repository.records import BackupRecord
from reconciler.timeutil import format_time
from reconciler.usecases import queries


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


@click.group()
def backups() -> None:
    """List and inspect backups."""


@backups.command("list")
@config_option
@click.option("--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
@handle_errors
def list_backups(config_path: Path, output: str) -> None:
    """Backups with status, time, duration, size and key thumbprint, oldest first."""
    records = queries.list_backups(load(config_path, check_validity=False)).backups
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
    record = queries.show_backup(config, backup_id)
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
