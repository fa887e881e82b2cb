"""The ``files`` source, backing up: a folder tree as a POSIX PAX tar stream.

What ``write_tree`` stores, and how:

* One entry per regular file, folder (empty ones too) and symbolic link, in a
  deterministic order: the root folder first (as ``.``), then depth first with
  the names of each folder sorted by their bytes. The same tree always gives
  the same bytes.
* Symbolic links are stored as links and never followed; a hard-linked file is
  stored once per name, as independent regular files.
* Sockets, FIFOs and device nodes are skipped without an error: they hold no
  data a restore could bring back.
* Modes keep all permission bits (setuid, setgid and sticky included); mtimes
  are exact to the nanosecond in the PAX ``mtime`` record (the stdlib writes a
  float there, which is not exact, so we write the decimal string ourselves).
* A file or folder that disappears between being listed and being read is left
  out, as if it had been deleted just before the backup started. A file whose
  size changes while it is read fails the backup with ``SourceError``: a tar
  entry must hold exactly the size in its header.

Given ``known`` (format 2's file cache), a large file whose content it knows
is opened and ``fstat``-ed but not read: its header and padding are written
and ``known.skip`` stands for its content (see ``known_files``).

Names are handled as bytes from the folder listing to the archive, so any
name survives as it is. Small files are read whole and written together with
their headers (``tar_writer``) in writes of up to ``CHUNK_SIZE``, larger ones
are streamed one chunk at a time, so no file is ever held whole in memory.
``tree_restore`` and ``tar_reader`` read such a stream back.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path

from reconciler.errors import SourceError
from reconciler.sources.known_files import KnownFiles
from reconciler.sources.stats import SourceStats
from reconciler.sources.tar_format import SMALL_FILE
from reconciler.sources.tar_writer import TarWriter
from reconciler.streams import CHUNK_SIZE, ByteSink


def write_tree(
    root: Path, exclude: tuple[str, ...], out: ByteSink, known: KnownFiles | None = None
) -> SourceStats:
    """Stream the tree under ``root`` to ``out`` as a PAX tar archive.

    ``exclude`` holds fnmatch globs, each matched against an entry's path
    relative to ``root`` (``/``-separated) and against its base name; an
    excluded folder is skipped with everything in it. Large files ``known``
    knows are not read (their content is ``known.skip``-ped).

    Returns the number of entries written (the root folder included) and the
    bytes of file content read. Raises ``SourceError`` when ``root`` is not an
    existing folder, when a file or folder cannot be read (the message names
    it) or when a file changes size while it is read.
    """
    root_stat = _root_stat(root)
    writer = TarWriter(out)
    writer.header(b".", tarfile.DIRTYPE, root_stat)
    items, content_bytes = 1, 0
    for name, entry in _walk(os.fsencode(root), exclude):
        path = entry.path
        try:
            if entry.is_file(follow_symlinks=False):
                size = _write_file(writer, name, path, known)
                if size is None:
                    continue
                content_bytes += size
            elif entry.is_dir(follow_symlinks=False):
                writer.header(name, tarfile.DIRTYPE, entry.stat(follow_symlinks=False))
            elif entry.is_symlink():
                if not _write_symlink(writer, name, entry):
                    continue
            else:
                continue  # socket, FIFO or device: nothing a restore could bring back
        except FileNotFoundError:
            continue  # deleted since its folder was listed
        except OSError as exc:
            raise SourceError(
                f"the path {os.fsdecode(path)} in the source cannot be read ({exc.strerror})"
            ) from exc
        items += 1
    writer.close()
    return SourceStats(items=items, content_bytes=content_bytes)


def _root_stat(root: Path) -> os.stat_result:
    """The ``stat`` of the source folder (a symlink to a folder is followed).

    Raises ``SourceError`` when it is missing, unreadable or not a folder."""
    try:
        st = os.stat(root)
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise SourceError(f"the folder {root} given as source does not exist") from exc
    except OSError as exc:
        raise SourceError(
            f"the folder {root} given as source cannot be read ({exc.strerror})"
        ) from exc
    if not stat.S_ISDIR(st.st_mode):
        raise SourceError(f"the path {root} given as source is not a folder")
    return st


def _walk(root: bytes, exclude: tuple[str, ...]) -> Iterator[tuple[bytes, os.DirEntry[bytes]]]:
    """Yield ``(archive name, entry)`` below ``root``, depth first, sorted by bytes.

    A folder is yielded before its contents, which are listed when the caller
    asks for the next entry (so a folder the caller could not read is never
    descended into). Names and paths are bytes, so any name survives as it
    is; an explicit stack rather than recursion, so that deep trees do not
    hit Python's recursion limit."""
    stack = [iter(_children(root, b""))]
    while stack:
        child = next(stack[-1], None)
        if child is None:
            stack.pop()
            continue
        name, entry = child
        if exclude and _is_excluded(os.fsdecode(name), exclude):
            continue
        yield name, entry
        try:
            is_dir = entry.is_dir(follow_symlinks=False)
        except OSError:
            continue  # gone, or unreadable: write_tree has reported it
        if is_dir:
            stack.append(iter(_children(entry.path, name)))


def _children(folder: bytes, name: bytes) -> list[tuple[bytes, os.DirEntry[bytes]]]:
    """The ``(archive name, entry)`` of each entry in ``folder``, sorted by bytes.

    Returns an empty list when the folder was deleted since it was listed.
    Raises ``SourceError`` naming the folder when it cannot be read."""
    try:
        with os.scandir(folder) as scan:
            entries = sorted(scan, key=_entry_name)
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as exc:
        raise SourceError(
            f"the folder {os.fsdecode(folder)} in the source cannot be read ({exc.strerror})"
        ) from exc
    prefix = name + b"/" if name else b""
    return [(prefix + entry.name, entry) for entry in entries]


def _entry_name(entry: os.DirEntry[bytes]) -> bytes:
    return entry.name


def _is_excluded(name: str, exclude: tuple[str, ...]) -> bool:
    """True when a glob matches the relative path ``name`` or its base name."""
    base = name.rpartition("/")[2]
    return any(
        fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(base, pattern)
        for pattern in exclude
    )


def _write_symlink(writer: TarWriter, name: bytes, entry: os.DirEntry[bytes]) -> bool:
    """Write a symbolic link entry; False when the link has disappeared.

    Raises ``SourceError`` naming the link when it cannot be read."""
    try:
        st = entry.stat(follow_symlinks=False)
        target = os.readlink(entry.path)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise SourceError(
            f"the symbolic link {os.fsdecode(entry.path)} in the source cannot be read"
            f" ({exc.strerror})"
        ) from exc
    writer.header(name, tarfile.SYMTYPE, st, linkname=target)
    return True


_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def _write_file(
    writer: TarWriter, name: bytes, path: bytes, known: KnownFiles | None
) -> int | None:
    """Write a regular file's header and content; its size, or None if it vanished.

    A file ``known`` knows is opened (the header needs its ``fstat``) but not read.

    The header is built from ``fstat`` of the open file, so that the size in it
    is the size of what we read. Raises ``SourceError`` naming the file when it
    cannot be opened or read, or changed size or type meanwhile."""
    try:
        # O_NOFOLLOW and O_NONBLOCK: if the file was swapped for a symlink or a
        # FIFO since it was listed, fail or return instead of following/blocking.
        fd = os.open(path, _OPEN_FLAGS)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise SourceError(
                f"the file {os.fsdecode(path)} was replaced while the backup was reading it"
            ) from exc
        raise SourceError(
            f"the file {os.fsdecode(path)} in the source cannot be read ({exc.strerror})"
        ) from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SourceError(
                f"the file {os.fsdecode(path)} was replaced while the backup was reading it"
            )
        size = st.st_size
        if size < SMALL_FILE:
            writer.small_file(name, st, _read_small(fd, size, path))
            return size
        writer.header(name, tarfile.REGTYPE, st, size=size)
        if known is not None and size >= known.min_size and known.known(name, st):
            writer.skip(size, known)
        else:
            _copy_exactly(fd, size, writer, path)
    except OSError as exc:
        raise SourceError(
            f"the file {os.fsdecode(path)} in the source cannot be read ({exc.strerror})"
        ) from exc
    finally:
        os.close(fd)
    writer.pad()
    return size


def _read_small(fd: int, size: int, path: bytes) -> bytes:
    """All ``size`` bytes of a small file, asking for one byte more to see its end.

    Raises ``SourceError`` when the file has fewer or more bytes than ``size``."""
    data = _read(fd, size + 1)
    if len(data) == size:
        return data
    parts = [data]
    got = len(data)
    while got <= size:
        more = _read(fd, size + 1 - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    if got != size:
        raise SourceError(_changed_size(path))
    return b"".join(parts)


def _copy_exactly(fd: int, size: int, writer: TarWriter, path: bytes) -> None:
    """Copy exactly ``size`` bytes from ``fd`` to the archive, in chunks.

    Raises ``SourceError`` when the file ends early or has more bytes: either
    way it changed while being read, and the header already promised ``size``."""
    remaining = size
    while remaining > 0:
        chunk = _read(fd, min(CHUNK_SIZE, remaining))
        if not chunk:
            raise SourceError(_changed_size(path))
        writer.write(chunk)
        remaining -= len(chunk)
    if _read(fd, 1):
        raise SourceError(_changed_size(path))


def _read(fd: int, size: int) -> bytes:
    """``os.read`` of a file opened with O_NONBLOCK, which regular files ignore
    on local file systems; should one refuse to block, make it blocking."""
    try:
        return os.read(fd, size)
    except BlockingIOError:
        os.set_blocking(fd, True)
        return os.read(fd, size)


def _changed_size(path: bytes) -> str:
    return (
        f"the file {os.fsdecode(path)} changed size while the backup was reading it, "
        "so it was not stored half-written"
    )
