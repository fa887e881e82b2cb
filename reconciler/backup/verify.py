"""Verification: prove that stored backups are intact, and record what was found.

Two depths:

- without a key, every object a manifest lists must exist with its recorded
  size and SHA-256 (what the daemon can do: it holds no private key);
- with the key, every frame is also decrypted and authenticated, every object
  decompressed, and every source's content parsed as a restore would (a tar
  tree read to its end, a database through ``PRAGMA integrity_check``, a dump
  read through), writing nothing but a database into a private work folder.

A verdict says whether the backup is intact or damaged; a check that could not
be made (no key for it, storage unreachable) is not a verdict, is reported, and
changes nothing in the repository.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from reconciler.backup.pipeline import check_stored_object, open_object
from reconciler.backup.restore import data_key_for
from reconciler.crypto.keyring import KeyRing
from reconciler.errors import (
    CryptoError,
    IntegrityError,
    ObjectNotFoundError,
    RestoreError,
    StorageError,
)
from reconciler.repository.records import BackupRecord, SourceResult
from reconciler.repository.store import Repository
from reconciler.repository.verdicts import Verdict
from reconciler.sources.kind import kind_named


@dataclass(frozen=True)
class Verification:
    """What checking one backup found."""

    backup_id: str
    full: bool
    """True when the data was decrypted and parsed, False for size and SHA-256 only."""
    problems: tuple[str, ...] = ()
    """Each damage found, as a sentence fragment naming the object."""
    not_checked: str | None = None
    """Why no verdict could be reached (no key, storage failure), else None."""
    objects: int = 0
    """How many stored objects were checked."""

    @property
    def intact(self) -> bool:
        return not self.problems and self.not_checked is None

    @property
    def damaged(self) -> bool:
        return bool(self.problems)

    @property
    def verdict(self) -> Verdict | None:
        """What the repository records of this check; None when no verdict was reached."""
        if self.not_checked is not None:
            return None
        return Verdict(self.backup_id, self.full, self.problems)

    @property
    def error(self) -> str | None:
        """One sentence for the user, or None when the backup is intact."""
        if self.problems:
            return f"backup {self.backup_id} is damaged: {'; '.join(self.problems)}"
        if self.not_checked is not None:
            return f"backup {self.backup_id} could not be verified: {self.not_checked}"
        return None


def verify_backup(
    repository: Repository,
    backup_id: str,
    ring: KeyRing | None,
    key_thumbprints: dict[str, str],
    work_dir: Path,
) -> Verification:
    """Check one committed backup; return what was found (never raises for damage).

    Without ``ring`` only sizes and SHA-256 are checked; with it, the data key
    is unwrapped with the ring's matching key and every source is decrypted and
    parsed. ``work_dir`` (private, temporary) holds databases while they are
    checked. A missing or unreadable manifest is damage. Raises nothing but
    programming errors: storage failures become ``not_checked``."""
    full = ring is not None
    try:
        record = repository.read_manifest(backup_id)
    except ObjectNotFoundError:
        return Verification(backup_id, full, ("its manifest is missing",))
    except IntegrityError as exc:
        return Verification(backup_id, full, (str(exc),))
    except StorageError as exc:
        return Verification(backup_id, full, not_checked=str(exc))
    data_key: bytes | None = None
    if ring is not None:
        try:
            data_key = data_key_for(record, ring, key_thumbprints)
        except IntegrityError as exc:
            return Verification(backup_id, full, (str(exc),))
        except CryptoError:
            return Verification(backup_id, full, not_checked=_no_key(record, ring))
    return _verify_objects(repository, record, data_key, work_dir)


def _no_key(record: BackupRecord, ring: KeyRing) -> str:
    """Return why ``ring`` cannot open ``record``: the certificate it needs, and
    any key-folder file that could not be loaded (it may be that key)."""
    thumbprint = record.wrapped_key.thumbprint if record.wrapped_key else record.key_thumbprint
    skipped = "".join(f"; {reason}" for reason in ring.unusable)
    return (
        f"it was encrypted to certificate {thumbprint} and no key given belongs to it; pass"
        f" that certificate's private key with --key or --key-dir{skipped}"
    )


def _verify_objects(
    repository: Repository, record: BackupRecord, data_key: bytes | None, work_dir: Path
) -> Verification:
    """Check every stored object of ``record``; return the Verification."""
    problems: list[str] = []
    stored = [s for s in record.sources if s.object is not None]
    for result in stored:
        try:
            problem = _check_source(repository, record.id, result, data_key, work_dir)
        except StorageError as exc:
            return Verification(record.id, data_key is not None, not_checked=str(exc))
        if problem is not None:
            problems.append(problem)
    return Verification(record.id, data_key is not None, tuple(problems), objects=len(stored))


def _check_source(
    repository: Repository,
    backup_id: str,
    result: SourceResult,
    data_key: bytes | None,
    work_dir: Path,
) -> str | None:
    """Return what is wrong with one source's object, or None when it is intact.

    Raises StorageError (other than a missing object) when the storage fails."""
    assert result.object is not None
    stored = repository.backup_object(backup_id, result.object.name)
    try:
        if data_key is None:
            return check_stored_object(stored, result.object)
        with open_object(stored, result.object, data_key) as plain:
            stats = kind_named(result.kind).read_through(plain, work_dir)
    except ObjectNotFoundError:
        return f"{stored.label} is missing"
    except IntegrityError as exc:
        return str(exc)
    except RestoreError as exc:
        # The work folder could not hold a database: not damage, but no verdict.
        raise StorageError(str(exc)) from None
    if (stats.items, stats.content_bytes) != (result.items, result.content_bytes):
        return (
            f"{stored.label} holds {stats.items} items and {stats.content_bytes} bytes of"
            f" content, its manifest records {result.items} items and {result.content_bytes} bytes"
        )
    return None


def verdicts_of(results: Sequence[Verification]) -> list[Verdict]:
    """The verdicts among ``results`` (checks that could not be made are none)."""
    return [verdict for result in results if (verdict := result.verdict) is not None]
