"""``backupctl status``: the status page's content, once.

Exits 0 whatever the health it shows (as ``terraform show`` and ``restic
snapshots`` do): the health is the output. It exits 1 only when the command
itself fails (the configuration cannot be read). A repository that cannot be
read is a configuration's health, with an alert saying why."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import click

from reconciler.cli.backups import human_size
from reconciler.cli.common import config_option, handle_errors, load
from reconciler.timeutil import format_time, now_utc
from reconciler.usecases.status import build_status
from reconciler.usecases.status_json import status_document
from reconciler.usecases.status_model import ConfigurationStatus, StatusReport


@click.command("status")
@config_option
@click.option(
    "--output",
    type=click.Choice(["text", "json", "html"]),
    default="text",
    show_default=True,
    help="html: the status page as one self-contained file (for a CI artifact or a mail).",
)
@handle_errors
def status(config_path: Path, output: str) -> None:
    """Every configuration's health, last backup, next backup and alerts."""
    # An expired certificate is an alert to show, not a reason to refuse.
    report = build_status(load(config_path, check_validity=False), now_utc())
    if output == "json":
        click.echo(json.dumps(status_document(report), indent=2))
        return
    if output == "html":
        from reconciler.web import render_snapshot  # only this output needs it

        click.echo(render_snapshot(report), nl=False)
        return
    click.echo(render_text(report), nl=False)


def render_text(report: StatusReport) -> str:
    """One block per configuration: its health word first, then what it rests on."""
    return "\n".join(_block(c, report.generated_at) for c in report.configurations)


def _block(status: ConfigurationStatus, now: datetime) -> str:
    health = str(status.health)
    if all(a.message != status.health_reason for a in status.alerts):
        health += f" ({status.health_reason})"  # else the alerts below say it
    rows = [
        ("health", health),
        ("location", status.location),
        ("last success", _last_success(status, now)),
        ("next backup", _next_backup(status, now)),
        ("backups", f"{status.backup_count}, {human_size(status.stored_bytes)} stored"),
        (
            "certificate",
            f"{status.key_thumbprint} {status.certificate_subject},"
            f" expires {format_time(status.certificate_not_after)}",
        ),
    ]
    if status.last_reconcile is not None:
        last = status.last_reconcile
        text = f"{last.result} at {format_time(last.at)}"
        rows.append(("last reconcile", text + (f": {last.message}" if last.message else "")))
    if status.running is not None:
        rows.append(("running", _running(status)))
    lines = [status.name]
    lines += [f"  {label + ':':<16}{value}" for label, value in rows]
    if status.alerts:
        lines.append("  alerts:")
        lines += [f"    {a.severity:<9}{a.kind}: {a.message}" for a in status.alerts]
    else:
        lines.append(f"  {'alerts:':<16}none")
    return "\n".join(lines) + "\n"


def _last_success(status: ConfigurationStatus, now: datetime) -> str:
    last = status.last_success
    if last is None:
        return "none"
    return f"{last.id} ({_ago(now - last.created_at)} ago)"


def _next_backup(status: ConfigurationStatus, now: datetime) -> str:
    at = status.next_backup_at
    if at is None:
        return "not scheduled"
    if at <= now:
        return "due now"
    return f"{format_time(at)} (in {_ago(at - now)})"


def _running(status: ConfigurationStatus) -> str:
    progress = status.running
    assert progress is not None
    text = f"{progress.backup_id or 'a backup'} since {format_time(progress.started_at)},"
    text += f" {progress.sources_done} of {progress.sources_total} sources done"
    if progress.source is not None:
        text += f"; {progress.source}: {human_size(progress.bytes_stored)}"
        if progress.bytes_expected:
            text += f" of about {human_size(progress.bytes_expected)}"
    return text


def _ago(delta: timedelta) -> str:
    """``5 min``, ``3 h 20 min``, ``2 d 4 h``."""
    minutes = max(0, int(delta.total_seconds() // 60))
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"
