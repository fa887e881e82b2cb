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

from reconciler.backup.chunked import check_chunked
from reconciler.backup.opening import BackupKeys, keys_for
from reconciler.backup.pipeline import check_stored_object
from reconciler.crypto.keyring import KeyRing
from reconciler.dedup.keys import DerivedKeys, IndexKey
from reconciler.errors import (
    ConfigError,
    CryptoError,
    IntegrityError,
    ObjectNotFoundError,
    RestoreError,
    StorageError,
    WrongKeyError,
)
from reconciler.repository.keyfiles import backup_index_key
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
    index_key: IndexKey | None = None,
) -> Verification:
    """Check one committed backup; return what was found (never raises for damage).

    Without ``ring`` only sizes and SHA-256 are checked; with it, the data key
    is unwrapped with the ring's matching key and every source is decrypted and
    parsed. ``work_dir`` (private, temporary) holds databases while they are
    checked. ``index_key`` is the configured index key: without the private key
    a format 2 backup is checked with it (or with the key the repository
    keeps). A missing or unreadable manifest is damage. Raises nothing but
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
    keys: BackupKeys | None = None
    derived: DerivedKeys | None = None
    try:
        if ring is not None:
            keys = keys_for(repository, record, ring, key_thumbprints)
        elif any(s.chunked for s in record.sources):
            derived = _index_keys(repository, index_key)
    except IntegrityError as exc:
        return Verification(backup_id, full, (str(exc),))
    except WrongKeyError:
        return Verification(backup_id, full, not_checked=_no_key(record, ring))
    except (CryptoError, ConfigError) as exc:
        return Verification(backup_id, full, not_checked=str(exc))
    except StorageError as exc:
        return Verification(backup_id, full, not_checked=str(exc))
    return _verify_objects(repository, record, keys, derived, work_dir)


def _index_keys(repository: Repository, configured: IndexKey | None) -> DerivedKeys:
    record = repository.read_index_key()
    if record is None:
        raise IntegrityError(f"{repository.description} holds format 2 backups but no index key")
    return backup_index_key(record, configured, repository.description).derive()


def _no_key(record: BackupRecord, ring: KeyRing | None) -> str:
    """Return why ``ring`` cannot open ``record``: the certificate it needs, and
    any key-folder file that could not be loaded (it may be that key)."""
    thumbprint = record.wrapped_key.thumbprint if record.wrapped_key else record.key_thumbprint
    skipped = "".join(f"; {reason}" for reason in ring.unusable) if ring else ""
    return (
        f"it was encrypted to certificate {thumbprint} and no key given belongs to it; pass"
        f" that certificate's private key with --key or --key-dir{skipped}"
    )


def _verify_objects(
    repository: Repository,
    record: BackupRecord,
    keys: BackupKeys | None,
    derived: DerivedKeys | None,
    work_dir: Path,
) -> Verification:
    """Check every stored object of ``record``; return the Verification."""
    problems: list[str] = []
    stored = [s for s in record.sources if s.object is not None]
    for result in stored:
        try:
            problem = _check_source(repository, record.id, result, keys, derived, work_dir)
        except StorageError as exc:
            return Verification(record.id, keys is not None, not_checked=str(exc))
        if problem is not None and problem not in problems:  # sources may share a pack
            problems.append(problem)
    return Verification(record.id, keys is not None, tuple(problems), objects=len(stored))


def _check_source(
    repository: Repository,
    backup_id: str,
    result: SourceResult,
    keys: BackupKeys | None,
    derived: DerivedKeys | None,
    work_dir: Path,
) -> str | None:
    """Return what is wrong with one source's object, or None when it is intact.

    Raises StorageError (other than a missing object) when the storage fails."""
    assert result.object is not None
    stored = repository.backup_object(backup_id, result.object.name)
    try:
        if keys is None:
            if result.chunked:
                assert derived is not None
                return check_chunked(repository, stored, result.object, derived)
            return check_stored_object(stored, result.object)
        if result.chunked and keys.derived is not None:
            # Also what the keyless check sees (pack headers and trailers, which
            # decrypting records never reads): a full verify never calls intact
            # what a keyless one found damaged.
            problem = check_chunked(repository, stored, result.object, keys.derived)
            if problem is not None:
                return problem
        with keys.open(repository, backup_id, result) as plain:
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
