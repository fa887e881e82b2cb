"""Local-folder storage: the embedded default."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from operator import attrgetter
from pathlib import Path
from typing import BinaryIO, NoReturn

from reconciler.errors import (
    ObjectExistsError,
    ObjectNotFoundError,
    PermissionDeniedError,
    StorageError,
    StorageFullError,
    UnreachableError,
)
from reconciler.storage.base import Entry
from reconciler.storage.keys import check_key, temp_name_for
from reconciler.storage.plumbing import check_range, shorter_than_asked, staged, write_whole
from reconciler.streams import ByteSink


class LocalStorage:
    """A repository folder on a local (or locally mounted) file system."""

    def __init__(self, root: Path) -> None:
        self._root = root

    @property
    def description(self) -> str:
        return f"local folder {self._root}"

    def _path(self, key: str) -> Path:
        return self._root.joinpath(*check_key(key))

    def _fail(self, exc: OSError, what: str) -> NoReturn:
        raise translate_os_error(exc, what) from exc

    def ensure_root(self) -> None:
        # The location itself must exist: creating it would hide an unmounted
        # disk or share and fill the wrong file system.
        location = self._root.parent
        if not location.is_dir():
            raise UnreachableError(
                f"the storage location {location} does not exist or is not a folder;"
                " create or mount it first"
            )
        try:
            self._root.mkdir(exist_ok=True)
        except OSError as exc:
            self._fail(exc, f"cannot create the repository folder {self._root}")

    def _make_parent(self, path: Path) -> None:
        """Create the folders between the repository root and ``path``, never the
        root itself: if the root vanished (an unmounted share leaving its empty
        mount point behind), writing must fail rather than fill the local disk."""
        if not self._root.is_dir():
            raise UnreachableError(
                f"the repository folder {self._root} no longer exists; is the storage unmounted?"
            )
        path.parent.mkdir(parents=True, exist_ok=True)

    def root_exists(self) -> bool:
        return self._root.is_dir()

    def read(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except OSError as exc:
            self._fail(exc, f"cannot read {self._path(key)}")

    @contextmanager
    def open_read(self, key: str) -> Iterator[BinaryIO]:
        path = self._path(key)
        try:
            stream = path.open("rb")
        except OSError as exc:
            self._fail(exc, f"cannot read {path}")
        with stream:
            yield stream

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        check_range(offset, length)
        path = self._path(key)
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            self._fail(exc, f"cannot read {path}")
        try:
            size = os.fstat(fd).st_size
            if offset + length > size:
                raise shorter_than_asked(str(path), offset, length, size)
            data = os.pread(fd, length, offset)
            # One pread suffices but past 2 GiB (Linux's limit per call) or
            # when the file was cut short since the fstat.
            while len(data) < length:
                more = os.pread(fd, length - len(data), offset + len(data))
                if not more:
                    raise shorter_than_asked(str(path), offset, length, offset + len(data))
                data += more
        except OSError as exc:
            self._fail(exc, f"cannot read {path}")
        finally:
            os.close(fd)
        return data

    def write_atomic(self, key: str, data: bytes) -> None:
        write_whole(self, key, data)

    @contextmanager
    def open_write(self, key: str) -> Iterator[ByteSink]:
        path = self._path(key)
        temp = path.with_name(temp_name_for(path.name))
        try:
            self._make_parent(path)
            stream = temp.open("xb")
        except OSError as exc:
            self._fail(exc, f"cannot write {path}")
        writer = _TranslatingWriter(stream, path)

        def commit() -> None:
            try:
                writer.finish()
                stream.flush()
                os.fsync(stream.fileno())
                stream.close()
                os.replace(temp, path)
                _fsync_dir(path.parent)
            except OSError as exc:
                self._fail(exc, f"cannot write {path}")

        def discard(_: BaseException) -> None:
            writer.finish(report=False)
            try:
                stream.close()  # may flush buffered data, and fail doing so
            except OSError as exc:
                self._fail(exc, f"cannot write {path}")
            finally:
                _remove_quietly(temp)

        with staged(writer, commit, discard) as out:
            yield out

    def create_exclusive(self, key: str, data: bytes) -> None:
        path = self._path(key)
        try:
            self._make_parent(path)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError as exc:
            raise ObjectExistsError(f"{path} already exists") from exc
        except OSError as exc:
            self._fail(exc, f"cannot create {path}")
        try:
            with os.fdopen(fd, "wb") as stream:
                stream.write(data)
                stream.flush()
                os.fsync(stream.fileno())
        except OSError as exc:
            path.unlink(missing_ok=True)
            self._fail(exc, f"cannot write {path}")

    def size(self, key: str) -> int:
        try:
            return self._path(key).stat().st_size
        except OSError as exc:
            self._fail(exc, f"cannot read {self._path(key)}")

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def list_dir(self, key: str) -> list[Entry]:
        path = self._path(key)
        try:
            with os.scandir(path) as entries:
                found = []
                for e in entries:
                    is_dir = e.is_dir()
                    found.append(Entry(e.name, is_dir, 0 if is_dir else e.stat().st_size))
        except FileNotFoundError:
            return []
        except OSError as exc:
            self._fail(exc, f"cannot list {path}")
        found.sort(key=_entry_name)  # a backups folder can hold thousands
        return found

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            self._fail(exc, f"cannot delete {path}")

    def delete_tree(self, key: str) -> None:
        path = self._path(key)
        try:
            shutil.rmtree(path)
        except FileNotFoundError:
            return
        except OSError as exc:
            self._fail(exc, f"cannot delete {path}")


class _TranslatingWriter:
    """A file writer whose OSErrors surface as StorageError at once, so that code
    between a source and the storage never mistakes a full disk for a bad source.

    Once an object passes ``SYNC_BYTES``, a thread flushes it to disk
    (``fdatasync``) every ``SYNC_BYTES`` while more is written, so that the
    fsync that commits it waits for the last few megabytes rather than for the
    whole object (on virtual disks a flush costs time in proportion to what it
    has to flush)."""

    def __init__(self, stream: BinaryIO, path: Path) -> None:
        self._stream = stream
        self._path = path
        self._written = 0
        self._synced_at = 0
        self._syncer: _Syncer | None = None

    def write(self, data: bytes | memoryview, /) -> int:
        try:
            written = self._stream.write(data)
        except OSError as exc:
            raise translate_os_error(exc, f"cannot write {self._path}") from exc
        self._written += written
        if self._written - self._synced_at >= SYNC_BYTES:
            self._synced_at = self._written
            if self._syncer is None:
                self._syncer = _Syncer(self._stream.fileno())
            self._syncer.request()
        return written

    def finish(self, report: bool = True) -> None:
        """Stop flushing in the background; raises the OSError a flush met."""
        if self._syncer is not None:
            syncer, self._syncer = self._syncer, None
            syncer.stop(report)


SYNC_BYTES = 32 * 1024 * 1024


class _Syncer:
    """A thread that runs ``fdatasync(fd)`` whenever asked, one at a time."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._wanted = threading.Event()
        self._stopping = False
        self._error: OSError | None = None
        self._thread = threading.Thread(target=self._run, name="fdatasync", daemon=True)
        self._thread.start()

    def request(self) -> None:
        self._wanted.set()

    def _run(self) -> None:
        while True:
            self._wanted.wait()
            self._wanted.clear()
            if self._stopping:
                return
            try:
                os.fdatasync(self._fd)
            except OSError as exc:
                # Reported once per file: the final fsync would not see it again.
                self._error = self._error or exc
                return

    def stop(self, report: bool) -> None:
        self._stopping = True
        self._wanted.set()
        self._thread.join()
        if report and self._error is not None:
            raise self._error


_entry_name = attrgetter("name")


def _remove_quietly(temp: Path) -> None:
    """Remove a temporary object if possible: when the folder itself is gone (an
    unmounted share), the original error is the one worth reporting, and staging
    cleanup removes what is left."""
    with contextlib.suppress(OSError):
        temp.unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def translate_os_error(exc: OSError, what: str) -> StorageError:
    """Map an OSError to the most specific StorageError, with a user sentence."""
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENOENT:
        return ObjectNotFoundError(f"{what}: it does not exist")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageFullError(f"{what}: no space left on the device")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return PermissionDeniedError(f"{what}: {reason.lower()}")
    if exc.errno in (errno.ENOTDIR, errno.EISDIR):
        return UnreachableError(f"{what}: a path component is not a folder")
    return StorageError(f"{what}: {reason.lower()}")
