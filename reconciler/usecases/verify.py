"""``verify``: prove stored backups intact, with or without the private key.

Verdicts are recorded in the repository (``verifiedAt``, ``verificationError``,
Corrupt status) only when the repository lock can be taken once checking is
done; the check itself runs without the lock, so a long drill never blocks the
daemon. When the lock is held elsewhere, or the credential may only read, the
verdicts are still reported but nothing is written.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.crypto.keyring import KeyRing
from reconciler.errors import BackupctlError, LockedError, StorageError
from reconciler.repository.records import BackupRecord, BackupStatus
from reconciler.repository.store import Repository
from reconciler.spec.model import BackupConfiguration
from reconciler.spec.secrets import configured_index_key
from reconciler.timeutil import now_utc
from reconciler.usecases.queries import LATEST, find_backup, holds_backup
from reconciler.usecases.repositories import known_thumbprints, open_repository

if TYPE_CHECKING:
    from reconciler.backup.verify import Verification

ALL = "all"
"""The selector naming every backup that is not Running (Corrupt ones included)."""


@dataclass(frozen=True)
class CheckedBackup:
    """One backup's check, as soon as it is known."""

    configuration: str
    verification: Verification
    status: BackupStatus
    """The backup's status before this check."""

    @property
    def stays_corrupt(self) -> bool:
        """Intact by size and SHA-256 but Corrupt: only a full check clears the mark."""
        return (
            self.verification.error is None
            and self.status is BackupStatus.CORRUPT
            and not self.verification.full
        )

    @property
    def passed(self) -> bool:
        """Intact, and not a Corrupt backup this check cannot clear.

        An intact full check of a Corrupt backup passes here; it fails after
        all when the verdict cannot be recorded (see ConfigurationVerification)."""
        return self.verification.error is None and not self.stays_corrupt

    @property
    def clears_corrupt(self) -> bool:
        return (
            self.verification.intact
            and self.verification.full
            and self.status is BackupStatus.CORRUPT
        )


@dataclass(frozen=True)
class ConfigurationVerification:
    """What verifying one configuration's backups found and recorded."""

    configuration: str
    checked: tuple[CheckedBackup, ...] = ()
    nothing_selected: bool = False
    """The selection was empty (a repository without backups)."""
    locked_by: str | None = None
    """Who held the lock, when the verdicts could not be recorded because of it."""
    record_error: str | None = None
    """Why the verdicts could not be written (a read-only credential, say)."""
    error: BackupctlError | None = None
    """Why the configuration could not be verified at all (no repository, no such backup)."""

    @property
    def recorded(self) -> bool:
        return self.locked_by is None and self.record_error is None

    @property
    def still_corrupt(self) -> tuple[str, ...]:
        """Backups a full check found intact that stay Corrupt, the verdict unrecorded."""
        if self.recorded:
            return ()
        return tuple(c.verification.backup_id for c in self.checked if c.clears_corrupt)

    @property
    def failed(self) -> int:
        return sum(1 for c in self.checked if not c.passed) + len(self.still_corrupt)


@dataclass(frozen=True)
class VerifyReport:
    selector: str
    full: bool
    """True when a key ring was given: data decrypted and read, not only hashed."""
    configurations: tuple[ConfigurationVerification, ...]
    found_nowhere: bool
    """A backup id was asked of several configurations and none holds it."""

    @property
    def checked(self) -> int:
        return sum(len(c.checked) for c in self.configurations)

    @property
    def failed(self) -> int:
        return sum(c.failed for c in self.configurations)

    @property
    def errors(self) -> int:
        return sum(1 for c in self.configurations if c.error is not None)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.errors and not self.found_nowhere


def verify_backups(
    configs: Sequence[BackupConfiguration],
    selector: str,
    ring: KeyRing | None,
    on_checked: Callable[[CheckedBackup], None] | None = None,
    on_configuration: Callable[[ConfigurationVerification], None] | None = None,
) -> VerifyReport:
    """Verify the backups ``selector`` names (an id, ``latest`` or ``all``) of
    every configuration and record the verdicts; return what was found.

    ``on_checked`` hears each backup's check as soon as it is known,
    ``on_configuration`` each configuration once it is done. A configuration
    that fails (BackupctlError) is reported in its ConfigurationVerification;
    the others are still verified."""
    # A backup id names one backup: with several configurations, only those
    # holding it are checked, and it is an error only if none does.
    one_of_many = selector not in (ALL, LATEST) and len(configs) > 1
    done: list[ConfigurationVerification] = []
    for config in configs:
        try:
            result = _verify_configuration(config, selector, ring, one_of_many, on_checked)
        except BackupctlError as exc:
            result = ConfigurationVerification(config.name, error=exc)
        done.append(result)
        if on_configuration is not None:
            on_configuration(result)
    found_nowhere = one_of_many and not any(c.checked or c.error for c in done)
    return VerifyReport(selector, ring is not None, tuple(done), found_nowhere)


def _verify_configuration(
    config: BackupConfiguration,
    selector: str,
    ring: KeyRing | None,
    skip_if_absent: bool,
    on_checked: Callable[[CheckedBackup], None] | None,
) -> ConfigurationVerification:
    """Verify the selected backups of one configuration and record the verdicts.

    Raises BackupctlError when the repository or the selected backup does not
    exist (a backup id that is absent is skipped instead when ``skip_if_absent``)."""
    repository = open_repository(config)
    if skip_if_absent and not holds_backup(repository, selector):
        return ConfigurationVerification(config.name)
    selected = _select(repository, selector)
    if not selected:
        return ConfigurationVerification(config.name, nothing_selected=True)
    from reconciler.backup.verify import verify_backup  # here: other commands never need it

    known = known_thumbprints(repository)
    # The private key unwraps the repository's index key itself: a host holding
    # it needs no spec.encryption.indexKey (whose secret may not be there).
    index_key = None if ring is not None else configured_index_key(config)
    checked: list[CheckedBackup] = []
    with tempfile.TemporaryDirectory(prefix="backupctl-verify-") as work:
        for record in selected:
            result = verify_backup(repository, record.id, ring, known, Path(work), index_key)
            checked.append(CheckedBackup(config.name, result, record.status))
            if on_checked is not None:
                on_checked(checked[-1])
    locked_by, record_error = _record_under_lock(
        config, repository, [c.verification for c in checked]
    )
    return ConfigurationVerification(
        config.name, tuple(checked), locked_by=locked_by, record_error=record_error
    )


def _select(repository: Repository, selector: str) -> list[BackupRecord]:
    """Return the backups ``selector`` names; raises BackupctlError for an unknown id."""
    if selector == ALL:
        return [
            b for b in repository.read_catalog().backups if b.status is not BackupStatus.RUNNING
        ]
    return [find_backup(repository, selector)]


def _record_under_lock(
    config: BackupConfiguration, repository: Repository, results: list[Verification]
) -> tuple[str | None, str | None]:
    """Record the verdicts under the repository lock.

    Returns (who holds the lock, why writing failed): both None once recorded."""
    from reconciler.backup.verify import verdicts_of

    try:
        with repository.writer_lock("backupctl verify"):
            repository.record_verdicts(verdicts_of(results), now_utc())
    except LockedError:
        holder = repository.read_lock()
        return (holder.describe() if holder is not None else "another process"), None
    except StorageError as exc:
        # Verifying needs only read access; a read-only credential still gets
        # its verdict, it just cannot be recorded.
        return None, str(exc)
    return None, None
