"""In-memory storage for unit tests: no I/O, and it counts what is read and written.

It passes the conformance suite the real backends pass (tests/storage), so it
behaves as a folder of files does: keys are checked, folders outlive their last
object, an object and a folder cannot share a key, and ``create_exclusive`` is
atomic between threads."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, BinaryIO

from reconciler.errors import ObjectExistsError, ObjectNotFoundError, UnreachableError
from reconciler.storage.base import Entry, parent_of
from reconciler.storage.keys import check_key
from reconciler.storage.plumbing import check_range, shorter_than_asked
from reconciler.streams import ByteSink

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer


class MemoryStorage:
    def __init__(self, name: str = "memory") -> None:
        self._name = name
        self._lock = threading.Lock()
        self.objects: dict[str, bytes] = {}
        """The content of every object by key; tests may change it directly."""
        self.folders: set[str] = set()
        """Folders that were created and not deleted ('' is the root), besides
        those implied by the keys of ``objects``."""
        self.created = False
        self.reads = 0
        self.bytes_read = 0
        """Bytes handed out by ``read`` and by the streams of ``open_read``."""
        self.writes = 0
        self.lookups = 0
        """Calls to ``exists``."""
        self.lists = 0
        """Calls to ``list_dir``."""
        self.written: list[str] = []
        """Keys written (``write_atomic``, ``open_write``, ``create_exclusive``), in order."""
        self.deleted: list[str] = []
        """Keys given to ``delete`` and ``delete_tree``, in order."""

    @property
    def description(self) -> str:
        return f"in-memory storage {self._name}"

    def ensure_root(self) -> None:
        self.created = True

    def root_exists(self) -> bool:
        return self.created or bool(self.objects) or bool(self.folders)

    def read(self, key: str) -> bytes:
        data = self._object(key)
        self.bytes_read += len(data)
        return data

    def _object(self, key: str) -> bytes:
        check_key(key)
        self.reads += 1
        try:
            return self.objects[key]
        except KeyError:
            raise ObjectNotFoundError(f"{key} does not exist in {self.description}") from None

    @contextmanager
    def open_read(self, key: str) -> Iterator[BinaryIO]:
        yield _CountingReader(self._object(key), self)

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        check_range(offset, length)
        data = self._object(key)
        if offset + length > len(data):
            raise shorter_than_asked(f"{key} in {self.description}", offset, length, len(data))
        self.bytes_read += length
        return data[offset : offset + length]

    def write_atomic(self, key: str, data: bytes) -> None:
        check_key(key)
        with self._lock:
            self._commit(key, data)

    def _commit(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` and create its folders; the lock is held.

        Raises UnreachableError, as a file system does, when a folder on the way
        is an object or the key is a folder."""
        folder = parent_of(key)
        while folder:
            if folder in self.objects:
                raise UnreachableError(
                    f"cannot write {key} in {self.description}: {folder} is not a folder"
                )
            folder = parent_of(folder)
        if key in self.folders:
            raise UnreachableError(f"cannot write {key} in {self.description}: it is a folder")
        self.writes += 1
        self.written.append(key)
        self.objects[key] = bytes(data)
        folder = parent_of(key)
        while folder:
            self.folders.add(folder)
            folder = parent_of(folder)

    @contextmanager
    def open_write(self, key: str) -> Iterator[ByteSink]:
        check_key(key)  # before the caller produces a byte, as the real backends do
        buffer = io.BytesIO()
        yield buffer
        self.write_atomic(key, buffer.getvalue())

    def create_exclusive(self, key: str, data: bytes) -> None:
        check_key(key)
        with self._lock:
            if key in self.objects:
                raise ObjectExistsError(f"{key} already exists in {self.description}")
            self._commit(key, data)

    def size(self, key: str) -> int:
        return len(self.read(key))

    def exists(self, key: str) -> bool:
        check_key(key)
        self.lookups += 1
        return key in self.objects

    def list_dir(self, key: str) -> list[Entry]:
        self.lists += 1
        prefix = "/".join(check_key(key))
        prefix = prefix + "/" if prefix else ""
        found: dict[str, Entry] = {}
        for name in self.folders:
            if name.startswith(prefix):
                head = name[len(prefix) :].partition("/")[0]
                found[head] = Entry(head, True, 0)
        for name, data in self.objects.items():
            if not name.startswith(prefix):
                continue
            head, sep, _ = name[len(prefix) :].partition("/")
            found[head] = Entry(head, bool(sep), 0 if sep else len(data))
        return [found[n] for n in sorted(found)]

    def delete(self, key: str) -> None:
        check_key(key)
        self.deleted.append(key)
        with self._lock:
            self.objects.pop(key, None)

    def delete_tree(self, key: str) -> None:
        """Delete the folder ``key`` with everything in it; '' is the root itself."""
        check_key(key)
        self.deleted.append(key)
        prefix = key.rstrip("/") + "/" if key else ""
        with self._lock:
            for name in [n for n in self.objects if n.startswith(prefix)]:
                del self.objects[name]
            self.folders = {f for f in self.folders if f != key and not f.startswith(prefix)}
            if not key:
                self.created = False


class _CountingReader(io.BytesIO):
    """A stream over an object that adds what is read to its storage's ``bytes_read``."""

    def __init__(self, data: bytes, storage: MemoryStorage) -> None:
        super().__init__(data)
        self._storage = storage

    def read(self, size: int | None = -1, /) -> bytes:
        data = super().read(size)
        self._storage.bytes_read += len(data)
        return data

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        count = super().readinto(buffer)
        self._storage.bytes_read += count
        return count
