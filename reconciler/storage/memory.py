"""In-memory storage for unit tests: no I/O, and it counts what is read and written."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, BinaryIO

from reconciler.errors import ObjectExistsError, ObjectNotFoundError
from reconciler.storage.base import Entry
from reconciler.storage.keys import check_key
from reconciler.streams import ByteSink

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer


class MemoryStorage:
    def __init__(self, name: str = "memory") -> None:
        self._name = name
        self.objects: dict[str, bytes] = {}
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
        return self.created or bool(self.objects)

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

    def write_atomic(self, key: str, data: bytes) -> None:
        check_key(key)
        self.writes += 1
        self.written.append(key)
        self.objects[key] = bytes(data)

    @contextmanager
    def open_write(self, key: str) -> Iterator[ByteSink]:
        buffer = io.BytesIO()
        yield buffer
        self.write_atomic(key, buffer.getvalue())

    def create_exclusive(self, key: str, data: bytes) -> None:
        if key in self.objects:
            raise ObjectExistsError(f"{key} already exists in {self.description}")
        self.write_atomic(key, data)

    def size(self, key: str) -> int:
        return len(self.read(key))

    def exists(self, key: str) -> bool:
        self.lookups += 1
        return key in self.objects

    def list_dir(self, key: str) -> list[Entry]:
        self.lists += 1
        prefix = "/".join(check_key(key))
        prefix = prefix + "/" if prefix else ""
        found: dict[str, Entry] = {}
        for name, data in self.objects.items():
            if not name.startswith(prefix):
                continue
            head, sep, _ = name[len(prefix) :].partition("/")
            found[head] = Entry(head, bool(sep), 0 if sep else len(data))
        return [found[n] for n in sorted(found)]

    def delete(self, key: str) -> None:
        self.deleted.append(key)
        self.objects.pop(key, None)

    def delete_tree(self, key: str) -> None:
        self.deleted.append(key)
        prefix = key.rstrip("/") + "/"
        for name in [n for n in self.objects if n.startswith(prefix)]:
            del self.objects[name]


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
