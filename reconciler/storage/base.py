"""The storage protocol every backend implements.

A ``Storage`` is rooted at one repository folder (``<location>/<name>/``).
Keys are relative, ``/``-separated paths inside it, e.g.
``backups/20261125T120000Z-1a2b3c/manifest.json``. Backends translate their
library's exceptions into ``reconciler.errors`` types at this boundary.

Guarantees every backend gives:

* ``write_atomic`` and ``open_write`` commit under the final key only when the
  whole object is written (temporary name, then rename); a reader never sees a
  partial object under its final key, and an aborted write leaves at most a
  temporary object whose name contains ``TEMP_MARKER``.
* ``create_exclusive`` fails with ``ObjectExistsError`` when the key exists,
  atomically with respect to other processes and hosts.
* Reads stream: ``open_read`` returns a binary file object; memory does not
  grow with object size.
* ``read_range`` returns exactly the bytes asked for, or raises: never fewer.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import BinaryIO, NamedTuple, Protocol, runtime_checkable

from reconciler.streams import ByteSink

TEMP_MARKER = ".tmp-"
"""Part of the name of every temporary object; staging cleanup looks for it."""


class Entry(NamedTuple):
    """One name directly inside a folder.

    A named tuple rather than a dataclass: listing a backups folder makes one
    per backup, and a tuple is made in a tenth of the time."""

    name: str
    is_dir: bool
    size: int


@runtime_checkable
class Storage(Protocol):
    """A folder of objects on some backend."""

    @property
    def description(self) -> str:
        """Where this is, for messages: 'local folder /srv/backups/region-west'."""
        ...

    def ensure_root(self) -> None:
        """Create the root folder (and parents) if missing.

        Raises StorageError subclasses when that is not possible."""
        ...

    def root_exists(self) -> bool: ...

    def read(self, key: str) -> bytes:
        """The whole content of a small object. Raises ObjectNotFoundError."""
        ...

    def open_read(self, key: str) -> AbstractContextManager[BinaryIO]:
        """A streaming reader. Raises ObjectNotFoundError."""
        ...

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        """Exactly ``length`` bytes of the object from byte ``offset`` on.

        One request where the backend allows it (a record out of a pack),
        retried like the backend's other reads. Raises ObjectNotFoundError
        when the object is missing, IntegrityError when it ends before
        ``offset + length`` (an object shorter than its index says is damaged,
        and no retry mends it), ValueError for a negative offset or length.
        A zero length gives b"" when ``offset`` is at most the object's size."""
        ...

    def write_atomic(self, key: str, data: bytes) -> None:
        """Write a small object all at once, replacing any previous one atomically."""
        ...

    def open_write(self, key: str) -> AbstractContextManager[ByteSink]:
        """A streaming writer that commits atomically when the block exits cleanly.

        On an exception inside the block, the temporary object is removed and the
        final key is untouched."""
        ...

    def create_exclusive(self, key: str, data: bytes) -> None:
        """Create a small object; raises ObjectExistsError if the key exists."""
        ...

    def size(self, key: str) -> int:
        """Size in bytes. Raises ObjectNotFoundError."""
        ...

    def exists(self, key: str) -> bool: ...

    def list_dir(self, key: str) -> list[Entry]:
        """Names directly inside a folder ('' is the root), sorted by name.

        A missing folder gives an empty list."""
        ...

    def delete(self, key: str) -> None:
        """Delete one object; a missing object is not an error."""
        ...

    def delete_tree(self, key: str) -> None:
        """Delete a folder and everything in it; a missing folder is not an error."""
        ...


def parent_of(key: str) -> str:
    return key.rsplit("/", 1)[0] if "/" in key else ""
