"""Plumbing the storage backends share, written once.

Each backend supplies only what its protocol does differently (how a file is
opened, renamed, listed or removed, and how its errors read); the order of the
steps around them, which is where the guarantees of ``base.Storage`` come
from, lives here:

* ``write_whole``: a small object is one streamed write, so it is committed
  exactly like a large one.
* ``staged``: write under a temporary name, commit (rename) on a clean exit,
  discard on any exception, then re-raise it.
* ``ChunkingWriter``: gathers small writes and cuts large ones into pieces of a
  fixed size (a network request each), holding at most one piece in memory.
* ``buffered_reader``: a streaming reader over a function that fills a buffer,
  read ahead in ``CHUNK_SIZE`` pieces.
* ``remove_tree``: depth-first removal for protocols that delete only empty
  folders.
* ``check_range`` and ``shorter_than_asked``: the arguments and the one
  failure of ``read_range``, worded alike on every backend.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, BinaryIO, Protocol, TypeVar

from reconciler.errors import IntegrityError
from reconciler.streams import CHUNK_SIZE, ByteSink

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from _typeshed import WriteableBuffer

W = TypeVar("W")


class _OpensWriters(Protocol):
    def open_write(self, key: str) -> AbstractContextManager[ByteSink]: ...


def write_whole(storage: _OpensWriters, key: str, data: bytes) -> None:
    """``write_atomic`` in terms of ``open_write``: same temporary name, same commit."""
    with storage.open_write(key) as out:
        out.write(data)


@contextmanager
def staged(
    writer: W, commit: Callable[[], None], discard: Callable[[BaseException], None]
) -> Iterator[W]:
    """Yield ``writer`` (bound to a temporary object); ``commit`` when the block
    exits cleanly. If the block or the commit raises, ``discard(exc)`` removes
    what it can of the temporary object and the exception propagates, so the
    final key is never touched by a failed write."""
    try:
        yield writer
        commit()
    except BaseException as exc:
        discard(exc)
        raise


class ChunkingWriter:
    """Hands written data to ``send`` in pieces of exactly ``chunk_size`` bytes
    (the last piece, sent by ``flush``, may be shorter).

    Small writes are gathered (one request per chunk, not per call); large ones
    are cut up without a copy, so memory stays bounded by about one chunk. The
    view given to ``send`` is valid only during the call."""

    def __init__(self, send: Callable[[memoryview], None], chunk_size: int = CHUNK_SIZE) -> None:
        self._send = send
        self._chunk_size = chunk_size
        self._buffer = bytearray()

    def write(self, data: bytes | memoryview, /) -> int:
        """Queue ``data``; returns its length in bytes. Raises what ``send`` raises."""
        view = memoryview(data).cast("B")
        size = len(view)
        if self._buffer:
            take = min(self._chunk_size - len(self._buffer), size)
            self._buffer += view[:take]
            view = view[take:]
            if len(self._buffer) < self._chunk_size:
                return size
            self.flush()
        while len(view) >= self._chunk_size:
            self._send(view[: self._chunk_size])
            view = view[self._chunk_size :]
        self._buffer += view
        return size

    def flush(self) -> None:
        """Send what is still queued, if anything. Raises what ``send`` raises."""
        if self._buffer:
            # Released before the clear: a bytearray with a live view cannot shrink.
            with memoryview(self._buffer) as pending:
                self._send(pending)
            self._buffer.clear()


class _FillingReader(io.RawIOBase):
    """A raw reader whose ``readinto`` is a function; ``release`` runs at close."""

    def __init__(self, fill: Callable[[memoryview], int], release: Callable[[], None]) -> None:
        super().__init__()
        self._fill = fill
        self._release = release

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        with memoryview(buffer) as whole, whole.cast("B") as view:
            return self._fill(view)

    def close(self) -> None:
        if not self.closed:
            self._release()
        super().close()


def _nothing() -> None:
    return None


@contextmanager
def buffered_reader(
    fill: Callable[[memoryview], int], release: Callable[[], None] = _nothing
) -> Iterator[BinaryIO]:
    """A binary stream reading ahead ``CHUNK_SIZE`` at a time through ``fill``.

    ``fill(view)`` puts up to ``len(view)`` bytes into ``view`` and returns how
    many, 0 at the end; ``release`` frees the handle when the stream closes."""
    with io.BufferedReader(_FillingReader(fill, release), buffer_size=CHUNK_SIZE) as stream:
        yield stream


def remove_tree(
    path: str,
    children: Callable[[str], Iterable[tuple[str, bool]]],
    remove_file: Callable[[str], None],
    remove_folder: Callable[[str], None],
) -> None:
    """Remove the folder ``path`` and everything in it, depth first.

    ``children(path)`` lists (child path, is a folder); the three functions
    decide which errors (an entry that vanished meanwhile) they tolerate."""
    for child, is_folder in children(path):
        if is_folder:
            remove_tree(child, children, remove_file, remove_folder)
        else:
            remove_file(child)
    remove_folder(path)


def check_range(offset: int, length: int) -> None:
    """Refuse a negative offset or length (a caller's bug, not bad storage).

    Raises ValueError."""
    if offset < 0 or length < 0:
        raise ValueError(f"a range needs a non-negative offset and length, not {offset}, {length}")


def shorter_than_asked(name: str, offset: int, length: int, size: int) -> IntegrityError:
    """The error of a range reaching past the end of the object ``name``."""
    asked = f"bytes {offset}-{offset + length - 1}" if length else f"offset {offset}"
    return IntegrityError(
        f"{name} is shorter than expected: asked for {asked}, it has {size} bytes"
    )
