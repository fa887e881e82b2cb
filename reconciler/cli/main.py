"""``backupctl``: validate, plan, apply, backups, restore, keys, unlock."""

from __future__ import annotations

import functools
import sys
from datetime import datetime
from pathlib import Path

import click

from reconciler import __version__
from reconciler.backup.engine import SourceEvent
from reconciler.cli.backups import backups
from reconciler.cli.common import (
    TimeParam,
    UserFacingExit,
    config_option,
    echo_err,
    fail,
    handle_errors,
    load,
)
from reconciler.cli.keys import keys
from reconciler.cli.restore import restore
from reconciler.errors import BackupctlError
from reconciler.reconcile.apply import Outcome, OutcomeStatus
from reconciler.reconcile.plan import ConfigurationPlan
from reconciler.reconcile.render import render_json, render_markdown, render_text
from reconciler.reconcile.session import make_plan, prepare, reconcile
from reconciler.repository.lock import read_lock
from reconciler.repository.records import LOCK_KEY
from reconciler.spec.model import SmbLocation
from reconciler.spec.secrets import resolve_secret
from reconciler.timeutil import now_utc


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.version_option(__version__, prog_name="backupctl")
def cli(debug: bool) -> None:
    """Declarative reconciler for encrypted infrastructure backups."""


@cli.command()
@config_option
@click.option(
    "--resolve-secrets", is_flag=True, help="Also check that every secret reference resolves."
)
@handle_errors
def validate(config_path: Path, resolve_secrets: bool) -> None:
    """Check configuration files: schema and semantics; touches no storage."""
    configs = load(config_path)
    if resolve_secrets:
        for config in configs:
            for ref in _secret_refs(config):
                resolve_secret(ref)
    names = ", ".join(c.name for c in configs)
    plural = "s" if len(configs) != 1 else ""
    click.echo(f"{config_path}: {len(configs)} valid configuration{plural} ({names})")


def _secret_refs(config: object) -> list:  # type: ignore[type-arg]
    from reconciler.spec.model import BackupConfiguration, SecretRef

    assert isinstance(config, BackupConfiguration)
    found: list[SecretRef] = []
    for location in (config.storage, config.migration_from):
        if isinstance(location, SmbLocation):
            found.append(location.password)
        elif location is not None and hasattr(location, "auth"):
            for value in vars(location.auth).values():
                if isinstance(value, SecretRef):
                    found.append(value)
    found.extend(k.passphrase for k in config.encryption.previous_keys if k.passphrase)
    return found


@cli.command()
@config_option
@click.option(
    "--output",
    "output",
    type=click.Choice(["text", "json", "markdown"]),
    default="text",
    show_default=True,
)
@click.option(
    "--detailed-exitcode",
    is_flag=True,
    help="Exit 0 when there is nothing to do, 2 when changes are pending, 1 on error.",
)
@click.option("--now", type=TimeParam(), help="Evaluate schedule and retention as of this time.")
@handle_errors
def plan(config_path: Path, output: str, detailed_exitcode: bool, now: datetime | None) -> None:
    """Show what apply would do now; changes nothing."""
    configs = load(config_path)
    moment = now or now_utc()
    plans: list[ConfigurationPlan] = []
    failed = False
    for config in configs:
        try:
            plans.append(make_plan(prepare(config), moment)[0])
        except BackupctlError as exc:
            echo_err(f"error: {config.name}: {exc}")
            failed = True
    if output == "json":
        click.echo(render_json(plans, moment, now_utc()), nl=False)
    elif output == "markdown":
        click.echo(render_markdown(plans, moment), nl=False)
    else:
        click.echo(render_text(plans), nl=False)
    if failed:
        raise UserFacingExit(1)
    if detailed_exitcode and any(p.actions for p in plans):
        raise UserFacingExit(2)


@cli.command()
@config_option
@click.option("--now", type=TimeParam(), help="Evaluate schedule and retention as of this time.")
@handle_errors
def apply(config_path: Path, now: datetime | None) -> None:
    """Reconcile: make the storage match the configuration."""
    configs = load(config_path)
    moment = now or now_utc()
    failed = False
    for config in configs:
        name = config.name
        try:
            _, outcomes = reconcile(
                prepare(config),
                moment,
                lock_command="backupctl apply",
                on_plan=_print_plan,
                on_outcome=functools.partial(_print_outcome, name),
                on_source=functools.partial(_print_source, name),
            )
        except BackupctlError as exc:
            echo_err(f"error: {config.name}: {exc}")
            failed = True
            continue
        failed = failed or any(o.status is not OutcomeStatus.DONE for o in outcomes)
    if failed:
        raise UserFacingExit(1)


def _print_plan(plan: ConfigurationPlan) -> None:
    click.echo(render_text([plan]).rsplit("\n", 2)[0])


def _print_outcome(name: str, outcome: Outcome) -> None:
    line = f"{name}: {outcome.action.name}: {outcome.status}: {outcome.message}"
    if outcome.status is OutcomeStatus.DONE:
        click.echo(line)
    else:
        echo_err(f"error: {line}")


def _print_source(name: str, event: SourceEvent) -> None:
    if event.result is None:
        return
    result = event.result
    detail = f"{result.size_bytes} bytes stored" if result.error is None else result.error
    click.echo(f"{name}: source {result.name}: {result.status} ({detail})")


@cli.command()
@config_option
@click.option("--configuration", "-c", "name", help="Which configuration, when PATH holds several.")
@click.option("--force", is_flag=True, help="Break the lock without asking for its nonce.")
@click.option("--nonce", help="The nonce of the lock to break, as shown in the locked message.")
@handle_errors
def unlock(config_path: Path, name: str | None, force: bool, nonce: str | None) -> None:
    """Break a repository lock left by a dead process."""
    from reconciler.cli.common import pick_one

    configs = load(config_path, check_validity=False)
    config = pick_one(configs, name, config_path)
    storage = prepare(config).repository.storage
    holder = read_lock(storage)
    if holder is None:
        click.echo(f"{config.name}: the repository is not locked")
        return
    if not force and nonce != holder.nonce:
        fail(
            f"{config.name} is locked by {holder.describe()}; to break this lock run"
            f" `backupctl unlock -f {config_path} --nonce {holder.nonce}` (or --force)"
        )
    storage.delete(LOCK_KEY)
    click.echo(f"{config.name}: broke the lock held by {holder.describe()}")


cli.add_command(backups)
cli.add_command(restore)
cli.add_command(keys)


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except UserFacingExit as exc:
        sys.exit(exc.code)
    except click.exceptions.Abort:
        echo_err("error: aborted")
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(1)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    sys.exit(0)
