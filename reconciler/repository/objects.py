"""A backup's stored object, handed out by the Repository without its storage key."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import BinaryIO

from reconciler.storage.base import Storage
from reconciler.streams import ByteSink


@dataclass(frozen=True)
class BackupObject:
    """One object of one backup: open it to read or write, delete it, name it in messages."""

    _storage: Storage
    _key: str
    name: str
    """The object's name inside its backup (as manifests record it)."""

    @property
    def label(self) -> str:
        """How messages name the object: its path inside the repository."""
        return self._key

    def open_read(self) -> AbstractContextManager[BinaryIO]:
        return self._storage.open_read(self._key)

    def open_write(self) -> AbstractContextManager[ByteSink]:
        """A writer that commits the object only when its block exits normally."""
        return self._storage.open_write(self._key)

    def delete(self) -> None:
        self._storage.delete(self._key)
