"""``backupctl verify``: prove stored backups intact, with or without the private key.

Results are recorded in the repository (``verifiedAt``, ``verificationError``,
Corrupt status) only when the repository lock can be taken once checking is
done; the check itself runs without the lock, so a long drill never blocks the
daemon. When the lock is held elsewhere, the results are printed and the exit
code reflects them, but nothing is written.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from reconciler.cli.backups import find_backup, open_repository
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
from reconciler.cli.keyring import key_options, key_ring_from_options, known_thumbprints
from reconciler.crypto.keyring import KeyRing
from reconciler.errors import BackupctlError, LockedError, StorageError
from reconciler.repository.records import BackupRecord, BackupStatus
from reconciler.repository.store import Repository
from reconciler.spec.model import BackupConfiguration
from reconciler.timeutil import now_utc

if TYPE_CHECKING:
    from reconciler.backup.verify import Verification


@dataclass(frozen=True)
class _Tally:
    checked: int = 0
    failed: int = 0

    def add(self, other: _Tally) -> _Tally:
        return _Tally(self.checked + other.checked, self.failed + other.failed)


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
    # A backup id names one backup: with several configurations, only those
    # holding it are checked, and it is an error only if none does.
    one_of_many = selector not in ("all", "latest") and len(configs) > 1
    tally = _Tally()
    errors = 0
    for config in configs:
        try:
            tally = tally.add(_verify_configuration(config, selector, ring, one_of_many))
        except BackupctlError as exc:
            report_error(f"{config.name}: ", exc)
            errors += 1
    if one_of_many and not tally.checked and not errors:
        fail(f"no configuration in {config_path} has a backup {selector}")
    depth = "decrypted and read" if ring is not None else "size and SHA-256 checked"
    click.echo(
        f"verified {tally.checked} backup{'s' if tally.checked != 1 else ''} ({depth}):"
        f" {tally.checked - tally.failed} intact, {tally.failed} failed"
    )
    if tally.failed or errors:
        raise UserFacingExit(1)


def _verify_configuration(
    config: BackupConfiguration, selector: str, ring: KeyRing | None, skip_if_absent: bool
) -> _Tally:
    """Verify the selected backups of one configuration and record the results.

    Returns how many were checked and failed. Raises BackupctlError when the
    repository or the selected backup does not exist (a backup id that is
    absent is skipped instead when ``skip_if_absent``)."""
    repository = open_repository(config)
    if skip_if_absent and not _has_backup(repository, selector):
        return _Tally()
    selected = _select(repository, selector)
    if not selected:
        click.echo(f"{config.name}: no backups to verify")
        return _Tally()
    from reconciler.backup.verify import verify_backup  # here: other commands never need it

    known = known_thumbprints(repository)
    results: list[Verification] = []
    failed = 0
    with tempfile.TemporaryDirectory(prefix="backupctl-verify-") as work:
        for record in selected:
            result = verify_backup(repository, record.id, ring, known, Path(work))
            results.append(result)
            failed += 0 if _report(config.name, result, record.status) else 1
    # An intact full verification clears a Corrupt mark only once recorded.
    clearing = [
        r.backup_id
        for r, b in zip(results, selected, strict=True)
        if r.intact and r.full and b.status is BackupStatus.CORRUPT
    ]
    if _record(config, repository, results) is None:
        for backup_id in clearing:
            echo_err(
                f"error: {config.name}: backup {backup_id} passed this check but stays Corrupt,"
                " because the result could not be recorded"
            )
        failed += len(clearing)
    return _Tally(len(results), failed)


def _has_backup(repository: Repository, backup_id: str) -> bool:
    """Return whether the repository holds ``backup_id`` (False for what is no id)."""
    return any(b.id == backup_id for b in repository.read_catalog().backups)


def _select(repository: Repository, selector: str) -> list[BackupRecord]:
    """Return the backups ``--backup`` names; raises BackupctlError for an unknown id."""
    if selector == "all":
        return [
            b for b in repository.read_catalog().backups if b.status is not BackupStatus.RUNNING
        ]
    return [find_backup(repository, selector)]


def _record(
    config: BackupConfiguration, repository: Repository, results: list[Verification]
) -> list[BackupRecord] | None:
    """Record the verdicts under the repository lock; return the updated records.

    Returns None (and says so) when another process holds the lock."""
    from reconciler.backup.verify import verdicts_of

    try:
        with repository.writer_lock("backupctl verify"):
            return repository.record_verdicts(verdicts_of(results), now_utc())
    except LockedError:
        holder = repository.read_lock()
        who = holder.describe() if holder is not None else "another process"
        echo_err(
            f"note: {config.name}: the results were not recorded in the repository because"
            f" it is locked by {who}"
        )
        return None
    except StorageError as exc:
        # Verifying needs only read access; a read-only credential still gets
        # its verdict, it just cannot be recorded.
        echo_err(f"note: {config.name}: the results were not recorded in the repository ({exc})")
        return None


def _report(name: str, result: Verification, status: BackupStatus) -> bool:
    """Print one backup's result as soon as it is known; return whether it passed.

    An intact full verification of a Corrupt backup passes here: recording it
    clears the mark (see _verify_configuration when it cannot be recorded)."""
    if result.error is not None:
        echo_err(f"error: {name}: {result.error}")
        return False
    if status is BackupStatus.CORRUPT and not result.full:
        echo_err(
            f"error: {name}: backup {result.backup_id} passed this check but stays Corrupt;"
            " only a verification with its private key (--key or --key-dir) clears that"
        )
        return False
    depth = "decrypted and read" if result.full else "size and SHA-256 match"
    click.echo(f"{name}: backup {result.backup_id} intact ({result.objects} objects: {depth})")
    return True
