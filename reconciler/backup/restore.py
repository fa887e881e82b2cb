"""Cloud recovery: decrypt a backup with the offline private key and restore it.

Nothing is put in place until every selected source has been read, verified
and written in full to a staging folder beside its target; only then is each
moved into place by rename. A failure leaves the targets as they were.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
import struct
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from reconciler.backup.opening import BackupKeys
from reconciler.backup.pipeline import BytesCallback
from reconciler.errors import RestoreError
from reconciler.failpoints import failpoint
from reconciler.repository.records import BackupRecord, SourceResult, SourceStatus
from reconciler.repository.store import Repository
from reconciler.sources.command import run_restore_command
from reconciler.sources.kind import kind_named
from reconciler.spec.model import (
    BackupConfiguration,
    CommandSource,
    Source,
)
from reconciler.spec.secrets import environment_without_secrets

STAGING_PREFIX = ".backupctl-restore-"
STAGED_PREFIX = "out-"
"""What a source is restored as inside its staging folder (a random name follows)."""
FS_IOC_GETFLAGS = 0x80086601
FS_IOC_SETFLAGS = 0x40086602
FS_TOPDIR_FL = 0x00020000
"""Linux inode flags (``chattr +T``): ext4 places folders made in such a folder as
top-level folders."""


@dataclass(frozen=True)
class RestoreRequest:
    to: Path | None
    """Restore under this folder (``DIR/<source>/``), or in place when None."""
    sources: tuple[str, ...]
    """Source names to restore; empty means every source the backup holds."""
    force: bool = False


@dataclass(frozen=True)
class RestoredSource:
    name: str
    target: str
    bytes: int


def select_sources(record: BackupRecord, names: tuple[str, ...]) -> list[SourceResult]:
    """The source results to restore. Raises RestoreError for unknown or failed sources."""
    by_name = {s.name: s for s in record.sources}
    if not names:
        chosen = [s for s in record.sources if s.status is SourceStatus.SUCCEEDED]
        if not chosen:
            raise RestoreError(f"backup {record.id} holds no successfully backed-up source")
        return chosen
    chosen = []
    for name in names:
        result = by_name.get(name)
        if result is None:
            known = ", ".join(by_name) or "none"
            raise RestoreError(f"backup {record.id} has no source named {name!r} (it has: {known})")
        if result.status is not SourceStatus.SUCCEEDED or result.object is None:
            raise RestoreError(
                f"source {name} failed in backup {record.id} and cannot be restored: {result.error}"
            )
        chosen.append(result)
    return chosen


def restore_backup(
    repository: Repository,
    config: BackupConfiguration,
    record: BackupRecord,
    keys: BackupKeys,
    request: RestoreRequest,
    on_source: Callable[[str], None] | None = None,
    on_bytes: BytesCallback | None = None,
) -> list[RestoredSource]:
    """Restore ``request.sources`` of ``record``; return where each went.

    ``on_source`` hears when each source starts, ``on_bytes`` how many stored
    bytes were read (progress; called from a reader thread).

    Raises RestoreError (target unusable), IntegrityError (damaged data),
    StorageError, SourceError (a restore command failed)."""
    chosen = select_sources(record, request.sources)
    plans = [_target_plan(config, record, result, request) for result in chosen]
    for plan in plans:
        plan.check_free(request.force)
    done: list[RestoredSource] = []
    staged: list[tuple[_TargetPlan, Path]] = []
    try:
        for plan in plans:
            if on_source:
                on_source(plan.result.name)
            staged.append((plan, plan.stage(repository, record, keys, on_bytes)))
        failpoint("restore-staged")
        for plan, staged_path in staged:
            done.append(plan.commit(staged_path))
    finally:
        for plan, staged_path in staged:
            plan.discard(staged_path)
    return done


@dataclass
class _TargetPlan:
    result: SourceResult
    source: Source | None
    kind: str
    target: Path | None
    """Final path: a folder for files and for anything under --to, the database
    file for an in-place sqlite restore; None for a restore command."""
    file_name: str | None
    """With --to, the name of the single file inside the target folder."""
    env: dict[str, str]
    """The environment of a restore command (without the configuration's secrets)."""

    def check_free(self, force: bool) -> None:
        if self.target is None or force:
            return
        if _non_empty(self.target):
            raise RestoreError(
                f"the restore target {self.target} is not empty; use --force to replace it"
            )

    def stage(
        self,
        repository: Repository,
        record: BackupRecord,
        keys: BackupKeys,
        on_bytes: BytesCallback | None = None,
    ) -> Path:
        """Restore into a staging folder beside the target; return what was
        restored there (a folder or a file inside the staging folder)."""
        parent = self.target.parent if self.target is not None else Path(tempfile.gettempdir())
        try:
            parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=parent))
        except OSError as exc:
            raise RestoreError(f"cannot write to {parent}: {_reason(exc)}") from None
        place_apart(staging)
        staged = staging / f"{STAGED_PREFIX}{secrets.token_hex(4)}"
        try:
            with keys.open(repository, record.id, self.result, on_bytes) as plain:
                self._write_staged(plain, staged)
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise RestoreError(
                f"cannot restore {self.result.name} into {parent}: {_reason(exc)}"
            ) from None
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return staged

    def _write_staged(self, plain: BinaryIO, out: Path) -> None:
        if self.file_name is not None:
            out.mkdir()
            out = out / self.file_name
        kind_named(self.kind).restore(plain, out)

    def commit(self, staged: Path) -> RestoredSource:
        if self.target is None:
            assert isinstance(self.source, CommandSource) and self.source.restore is not None
            with staged.open("rb") as stream:
                run_restore_command(
                    self.source.restore,
                    self.source.timeout_seconds,
                    stream,
                    cwd=self.source.workdir,
                    env=self.env,
                )
            command = " ".join(self.source.restore)
            return RestoredSource(self.result.name, f"command {command}", self.result.content_bytes)
        try:
            restored = staged / self.file_name if self.file_name else staged
            kind_named(self.kind).prepare_to_replace(
                restored, None if self.file_name else self.target
            )
            _replace(staged, self.target)
        except OSError as exc:
            raise RestoreError(
                f"cannot move the restored {self.result.name} to {self.target}: {_reason(exc)}"
            ) from None
        where = self.target / self.file_name if self.file_name else self.target
        return RestoredSource(self.result.name, str(where), self.result.content_bytes)

    def discard(self, staged: Path) -> None:
        shutil.rmtree(staged.parent, ignore_errors=True)


def place_apart(staging: Path) -> None:
    """Ask ext4 to put what is restored into ``staging`` in block groups of its own
    (best effort: other file systems refuse or ignore the flag).

    ext4 without a journal will not reuse an inode freed in the last one to
    five minutes, and scans past every such inode for each new file. A new
    folder stays in its parent's group of block groups, where a tree deleted
    just before (a damaged tree cleared for ``--in-place --force``, the
    previous restore) freed thousands of inodes: each restored file would then
    cost the kernel about half a millisecond instead of tens of microseconds.
    Under a folder flagged as top-level (``chattr +T``), a new folder goes where
    ext4 puts top-level ones: the first group with the fewest folders and at
    least average free space, searching from a hash of its name (random here,
    so that on a disk of many groups it is seldom the one such a tree just
    emptied)."""
    try:
        fd = os.open(staging, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            # The kernel reads and writes an int, whatever the ioctl number says.
            buffer = bytearray(8)
            fcntl.ioctl(fd, FS_IOC_GETFLAGS, buffer)
            (flags,) = struct.unpack_from("i", buffer)
            if not flags & FS_TOPDIR_FL:
                struct.pack_into("i", buffer, 0, flags | FS_TOPDIR_FL)
                fcntl.ioctl(fd, FS_IOC_SETFLAGS, buffer)
    finally:
        os.close(fd)


def _target_plan(
    config: BackupConfiguration, record: BackupRecord, result: SourceResult, request: RestoreRequest
) -> _TargetPlan:
    source = config.source(result.name)
    env = environment_without_secrets(config)
    if request.to is not None:
        folder = request.to / result.name
        name = kind_named(result.kind).restored_file_name(result.name, source)
        return _TargetPlan(result, source, result.kind, folder, name, env)
    if source is None or source.kind != result.kind:
        raise RestoreError(
            f"source {result.name} of backup {record.id} is not in the configuration as a"
            f" {result.kind} source, so it has no place to restore to in place; use --to DIR"
        )
    if isinstance(source, CommandSource):
        if source.restore is None:
            raise RestoreError(
                f"source {source.name} has no restore command in the configuration; use --to DIR"
                " to get its dump"
            )
        return _TargetPlan(result, source, result.kind, None, None, env)
    return _TargetPlan(result, source, result.kind, source.path, None, env)


def _non_empty(path: Path) -> bool:
    if path.is_dir() and not path.is_symlink():
        return any(path.iterdir())
    return path.exists() or path.is_symlink()


def _replace(staged: Path, target: Path) -> None:
    """Move ``staged`` to ``target``; an existing target is moved aside first and
    removed only after the new one is in place."""
    aside: Path | None = None
    if target.exists() or target.is_symlink():
        aside = target.with_name(f"{STAGING_PREFIX}old-{secrets.token_hex(4)}-{target.name}")
        os.rename(target, aside)
    try:
        os.rename(staged, target)
    except OSError:
        if aside is not None:
            os.rename(aside, target)
        raise
    if aside is not None:
        if aside.is_dir() and not aside.is_symlink():
            shutil.rmtree(aside)
        else:
            aside.unlink()


def _reason(exc: OSError) -> str:
    return (exc.strerror or str(exc)).lower()
