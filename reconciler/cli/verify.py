"""``backupctl verify``: prove stored backups intact, with or without the private key.

The use case (reconciler.usecases.verify) checks and records; this module
prints each result as soon as it is known, and the summary. When the results
could not be recorded (the repository locked elsewhere, a read-only
credential) it says so, and the exit code still reflects the results.
"""

from __future__ import annotations

from pathlib import Path

import click

from reconciler.cli.common import (
    UserFacingExit,
    config_option,
    echo_err,
    fail,
    handle_errors,
    load,
    pick_one,
    report_error,
)
from reconciler.cli.keyring import key_options, key_ring_from_options
from reconciler.usecases.verify import CheckedBackup, ConfigurationVerification, verify_backups


@click.command()
@config_option
@click.option(
    "--backup",
    "selector",
    default="all",
    show_default=True,
    help="A backup id, 'latest' (the newest Succeeded) or 'all' (Corrupt ones included).",
)
@key_options
@click.option("--configuration", "-c", "name", help="Only this configuration of PATH.")
@handle_errors
def verify(
    config_path: Path,
    selector: str,
    key_paths: tuple[Path, ...],
    key_dirs: tuple[Path, ...],
    key_passphrase_env: str | None,
    name: str | None,
) -> None:
    """Check stored backups: sizes and SHA-256 without a key; with --key or --key-dir,
    also decrypt every frame and read every source (a restore drill that writes nothing)."""
    configs = load(config_path, check_validity=False)
    if name is not None:
        configs = [pick_one(configs, name, config_path)]
    ring = key_ring_from_options(key_paths, key_dirs, key_passphrase_env)
    report = verify_backups(
        configs, selector, ring, on_checked=_say_checked, on_configuration=_say_configuration
    )
    if report.found_nowhere:
        fail(f"no configuration in {config_path} has a backup {selector}")
    depth = "decrypted and read" if report.full else "size and SHA-256 checked"
    checked = report.checked
    click.echo(
        f"verified {checked} backup{'s' if checked != 1 else ''} ({depth}):"
        f" {checked - report.failed} intact, {report.failed} failed"
    )
    if not report.ok:
        raise UserFacingExit(1)


def _say_checked(checked: CheckedBackup) -> None:
    """Print one backup's result as soon as it is known."""
    name, result = checked.configuration, checked.verification
    if result.error is not None:
        echo_err(f"error: {name}: {result.error}")
    elif checked.stays_corrupt:
        echo_err(
            f"error: {name}: backup {result.backup_id} passed this check but stays Corrupt;"
            " only a verification with its private key (--key or --key-dir) clears that"
        )
    else:
        depth = "decrypted and read" if result.full else "size and SHA-256 match"
        click.echo(f"{name}: backup {result.backup_id} intact ({result.objects} objects: {depth})")


def _say_configuration(done: ConfigurationVerification) -> None:
    """Print how one configuration ended: its error, or whether its results were recorded."""
    name = done.configuration
    if done.error is not None:
        report_error(f"{name}: ", done.error)
        return
    if done.nothing_selected:
        click.echo(f"{name}: no backups to verify")
    if done.locked_by is not None:
        echo_err(
            f"note: {name}: the results were not recorded in the repository because"
            f" it is locked by {done.locked_by}"
        )
    if done.record_error is not None:
        echo_err(
            f"note: {name}: the results were not recorded in the repository ({done.record_error})"
        )
    for backup_id in done.still_corrupt:
        echo_err(
            f"error: {name}: backup {backup_id} passed this check but stays Corrupt,"
            " because the result could not be recorded"
        )
