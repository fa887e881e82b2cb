"""A Storage that refuses to write once its writer may no longer do so.

Apply writes through this wrapper while it holds the repository lock. Before
every change (and every chunk of a streamed upload) it calls ``guard``, which
raises when the lock was lost (taken over, broken by ``unlock``, not renewed in
time) or the process is shutting down; then nothing more is written and the
backup in progress is left uncommitted. Reads pass straight through. The same
call is a sign of progress, which the daemon's health check uses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import BinaryIO

from reconciler.storage.base import Entry, Storage
from reconciler.streams import ByteSink


class FencedStorage:
    """``storage`` with ``guard()`` called before every write; ``guard`` raises to stop."""

    def __init__(self, storage: Storage, guard: Callable[[], None]) -> None:
        self._storage = storage
        self._guard = guard

    @property
    def description(self) -> str:
        return self._storage.description

    def ensure_root(self) -> None:
        self._guard()
        self._storage.ensure_root()

    def root_exists(self) -> bool:
        return self._storage.root_exists()

    def read(self, key: str) -> bytes:
        return self._storage.read(key)

    def open_read(self, key: str) -> AbstractContextManager[BinaryIO]:
        return self._storage.open_read(key)

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        return self._storage.read_range(key, offset, length)

    def write_atomic(self, key: str, data: bytes) -> None:
        self._guard()
        self._storage.write_atomic(key, data)

    @contextmanager
    def open_write(self, key: str) -> Iterator[ByteSink]:
        self._guard()
        with self._storage.open_write(key) as out:
            yield _GuardedWriter(out, self._guard)
            # Checked again just before the object is committed under its key.
            self._guard()

    def create_exclusive(self, key: str, data: bytes) -> None:
        self._guard()
        self._storage.create_exclusive(key, data)

    def size(self, key: str) -> int:
        return self._storage.size(key)

    def exists(self, key: str) -> bool:
        return self._storage.exists(key)

    def list_dir(self, key: str) -> list[Entry]:
        return self._storage.list_dir(key)

    def delete(self, key: str) -> None:
        self._guard()
        self._storage.delete(key)

    def delete_tree(self, key: str) -> None:
        self._guard()
        self._storage.delete_tree(key)


class _GuardedWriter:
    def __init__(self, out: ByteSink, guard: Callable[[], None]) -> None:
        self._out = out
        self._guard = guard

    def write(self, data: bytes, /) -> object:
        self._guard()
        return self._out.write(data)
