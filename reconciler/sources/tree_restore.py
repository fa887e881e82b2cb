"""The ``files`` source, restoring: a ``write_tree`` archive back onto disk.

Entries are created below the target and never through a symbolic link;
small files are created by worker processes (``small_files``) while the
archive is read on, and folders get their modes and mtimes last.
"""

from __future__ import annotations

import os
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from reconciler.errors import IntegrityError, RestoreError
from reconciler.sources._small_file_worker import create_file, finish_file
from reconciler.sources.small_files import FileEnd, SmallFileWriters
from reconciler.sources.stats import SourceStats, write_all
from reconciler.sources.tar_format import REGULAR_TYPES
from reconciler.sources.tar_reader import ArchiveReader, Member, MemberCheck
from reconciler.streams import ByteSource


def restore_tree(stream: ByteSource, target: Path) -> SourceStats:
    """Extract a ``write_tree`` archive into the folder ``target``.

    ``target`` is created if missing; it should be a fresh empty folder.
    Contents, modes, symbolic links, empty folders and nanosecond mtimes are
    restored; owners too when running as root (best effort: an owner that
    cannot be set is left as it is). The root entry's mode and mtime are
    applied to ``target`` itself.

    Returns the number of entries and the bytes of file content restored.
    Raises ``IntegrityError`` when the archive is malformed, truncated or
    unsafe (absolute names, ``..``, entries below one of its symbolic links,
    duplicates, hard links, devices, FIFOs) and ``RestoreError`` when
    ``target`` cannot be written or already holds an entry of the archive.
    """
    _make_folder(target)
    check = MemberCheck()
    restorer = _Restorer(os.fsencode(target), check)
    reader = ArchiveReader(stream)
    items, content_bytes = 0, 0
    try:
        while (member := reader.next_member()) is not None:
            parts = check.check(member)
            kind = member.kind
            if kind in REGULAR_TYPES:
                data = reader.whole_data(member)
                if data is not None:
                    restorer.small_file(parts, member, data)
                else:
                    restorer.file(parts, member, reader.data(member))
                content_bytes += member.size  # data() raises unless it was all there
            elif kind == tarfile.DIRTYPE:
                restorer.directory(parts, member)
            else:
                restorer.symlink(parts, member)
            items += 1
        reader.finish()
        restorer.finish()
    finally:
        restorer.close()
    return SourceStats(items=items, content_bytes=content_bytes)


def _make_folder(target: Path) -> None:
    """Create ``target`` and its parents. Raises ``RestoreError`` naming it."""
    try:
        target.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:
        raise RestoreError(f"the restore target {target} exists and is not a folder") from exc
    except OSError as exc:
        raise RestoreError(
            f"the restore target folder {target} cannot be created ({exc.strerror})"
        ) from exc


def _permissions(member: Member) -> int:
    """The permission bits (setuid, setgid and sticky included) of a member.

    The mode field is not masked by every writer, so a crafted header could
    carry file type bits."""
    return stat.S_IMODE(member.mode)


@dataclass(frozen=True)
class _FolderMeta:
    depth: int
    path: bytes
    mode: int
    mtime_ns: int
    uid: int
    gid: int


class _Restorer:
    """Creates members below ``target``, never through a symbolic link.

    Folder modes and mtimes are applied by ``finish``, deepest first: writing a
    child changes its folder's mtime, and a read-only folder could not receive
    its children."""

    def __init__(self, target: bytes, check: MemberCheck) -> None:
        self._target = target
        self._check = check
        self._as_root = os.geteuid() == 0
        # What a new entry's owner already is, unless a set-group-ID folder
        # gives it the folder's group: then every owner is set.
        inherits_group = bool(os.stat(target).st_mode & stat.S_ISGID)
        self._ids = (-1, -1) if inherits_group else (os.geteuid(), os.getegid())
        self._umask = _umask()
        self._folders: list[_FolderMeta] = []
        self._folder_parts: set[tuple[bytes, ...]] = set()
        self._checked_parent: tuple[bytes, ...] | None = None
        self._writers = SmallFileWriters()

    def _path(self, parts: tuple[bytes, ...]) -> bytes:
        return b"/".join((self._target, *parts))

    def directory(self, parts: tuple[bytes, ...], member: Member) -> None:
        """Create a folder (or accept one made earlier as a parent)."""
        path = self._target
        if parts:
            self._parent(parts)
            path = self._path(parts)
            try:
                # Private until finish() applies the stored mode.
                os.mkdir(path, 0o700)
            except FileExistsError:
                if not stat.S_ISDIR(os.lstat(path).st_mode):
                    raise RestoreError(
                        f"the restore target already holds {os.fsdecode(path)},"
                        " which is not a folder"
                    ) from None
            except OSError as exc:
                raise RestoreError(
                    f"the folder {os.fsdecode(path)} cannot be created ({exc.strerror})"
                ) from exc
        self._folder_parts.add(parts)
        self._folders.append(
            _FolderMeta(
                len(parts), path, _permissions(member), member.mtime_ns, member.uid, member.gid
            )
        )

    def symlink(self, parts: tuple[bytes, ...], member: Member) -> None:
        """Create a symbolic link as a link, with its owner and mtime."""
        self._parent(parts)
        path = self._path(parts)
        mtime = member.mtime_ns
        try:
            os.symlink(member.linkname, path)
        except FileExistsError:
            raise RestoreError(f"the restore target already holds {os.fsdecode(path)}") from None
        except OSError as exc:
            raise RestoreError(
                f"the symbolic link {os.fsdecode(path)} cannot be created ({exc.strerror})"
            ) from exc
        self._own(path, member)
        try:
            os.utime(path, ns=(mtime, mtime), follow_symlinks=False)
        except OSError as exc:
            raise RestoreError(
                f"the mtime of {os.fsdecode(path)} cannot be set ({exc.strerror})"
            ) from exc

    def file(self, parts: tuple[bytes, ...], member: Member, chunks: Iterator[memoryview]) -> None:
        """Create a regular file from ``chunks``, here, in order (the small files
        queued meanwhile are created by worker processes)."""
        self._parent(parts)
        path = self._path(parts)
        end = self._file_end(member)._replace(plain=False)
        fd = _create(path, end)
        try:
            for chunk in chunks:
                write_all(fd, chunk)
            finish_file(fd, end.mtime_ns, end.mode, end.owner, end.plain)
        except OSError as exc:
            raise RestoreError(
                f"the file {os.fsdecode(path)} cannot be written ({exc.strerror})"
            ) from exc
        finally:
            os.close(fd)

    def _file_end(self, member: Member) -> FileEnd:
        mode = _permissions(member)
        owner = None
        if self._as_root and (member.uid, member.gid) != self._ids:
            owner = (member.uid, member.gid)
        # Created with its final mode unless the umask would cut it or chown
        # could clear it (set-user/group-ID): then set after writing.
        plain = not mode & (stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX | self._umask)
        return FileEnd(mode, plain, owner, member.mtime_ns)

    def small_file(self, parts: tuple[bytes, ...], member: Member, data: memoryview) -> None:
        """Create a regular file holding ``data``, by a worker process.

        Errors surface from a later call or from ``finish``."""
        self._parent(parts)
        self._writers.submit(self._path(parts), data, self._file_end(member))

    def finish(self) -> None:
        """Wait for the file writers, then apply owners, modes and mtimes of
        folders, deepest first."""
        self._writers.close()
        for meta in sorted(self._folders, key=lambda meta: meta.depth, reverse=True):
            try:
                if self._as_root and (meta.uid, meta.gid) != self._ids:
                    _chown_best_effort(meta.path, meta.uid, meta.gid)
                os.chmod(meta.path, meta.mode)
                os.utime(meta.path, ns=(meta.mtime_ns, meta.mtime_ns), follow_symlinks=False)
            except OSError as exc:
                raise RestoreError(
                    f"the mode and mtime of the folder {os.fsdecode(meta.path)} cannot be set"
                    f" ({exc.strerror})"
                ) from exc

    def close(self) -> None:
        """Stop the file writers (also after an error); idempotent."""
        self._writers.close(report=False)

    def _own(self, path: bytes | int, member: Member) -> None:
        # Skipped when the entry already has that owner: it was created by us.
        if self._as_root and (member.uid, member.gid) != self._ids:
            _chown_best_effort(path, member.uid, member.gid)

    def _parent(self, parts: tuple[bytes, ...]) -> None:
        """Make sure every folder above ``parts`` is a real folder, creating missing ones.

        Raises ``IntegrityError`` when the archive itself put a non-folder
        there and ``RestoreError`` when the target already held one."""
        parent = parts[:-1]
        if parent == self._checked_parent:
            return  # entries come sorted: most share the previous one's parent
        path = self._target
        for depth, part in enumerate(parent, start=1):
            path = path + b"/" + part
            above = parent[:depth]
            if above in self._check.seen and above not in self._folder_parts:
                # Decided from the archive, not the disk: small files are
                # written by other threads and may not exist yet.
                raise IntegrityError(
                    f"the entry {os.fsdecode(b'/'.join(parts))!r} in the backup lies below"
                    f" {os.fsdecode(b'/'.join(above))!r},"
                    " which the backup makes something other than a folder"
                )
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                try:
                    os.mkdir(path)
                except OSError as exc:
                    raise RestoreError(
                        f"the folder {os.fsdecode(path)} cannot be created ({exc.strerror})"
                    ) from exc
                continue
            if stat.S_ISDIR(st.st_mode):
                continue  # lstat: a symbolic link to a folder is not S_ISDIR
            name = os.fsdecode(b"/".join(parts))
            raise RestoreError(
                f"the restore target already holds {os.fsdecode(path)}, which is not a folder,"
                f" where the backup has a folder for {name!r}"
            )
        self._checked_parent = parent


def _chown_best_effort(path: bytes | int, uid: int, gid: int) -> None:
    """Set the owner without following links; an owner the system refuses is skipped."""
    try:
        if isinstance(path, int):
            os.chown(path, uid, gid)
        else:
            os.chown(path, uid, gid, follow_symlinks=False)
    except OSError:
        pass  # e.g. an id unknown to a user namespace: keep the restoring user's


def _create(path: bytes, end: FileEnd) -> int:
    """Open a new file for writing; raises ``RestoreError`` naming it."""
    try:
        return create_file(path, end.mode, end.plain)
    except FileExistsError:
        raise RestoreError(f"the restore target already holds {os.fsdecode(path)}") from None
    except OSError as exc:
        raise RestoreError(
            f"the file {os.fsdecode(path)} cannot be created ({exc.strerror})"
        ) from exc


def _umask() -> int:
    """This process's umask, read without changing it (Linux), else assumed 0o022."""
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022
