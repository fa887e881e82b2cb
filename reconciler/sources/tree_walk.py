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
and ``known.skip`` stands for its content (see ``known_files``). Small
entries are grouped into runs (a folder and the small files and links after
it, up to the next folder or large file); a run ``known`` knows, its entries
``lstat``-ed (and links read) but no file opened, is ``known.skip_run``-ped.

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
from dataclasses import dataclass
from pathlib import Path

from reconciler.errors import SourceError
from reconciler.sources.known_files import KnownFiles
from reconciler.sources.stats import SourceStats
from reconciler.sources.tar_format import SMALL_FILE
from reconciler.sources.tar_writer import TarWriter, describe
from reconciler.streams import CHUNK_SIZE, ByteSink


def write_tree(
    root: Path, exclude: tuple[str, ...], out: ByteSink, known: KnownFiles | None = None
) -> SourceStats:
    """Stream the tree under ``root`` to ``out`` as a PAX tar archive.

    ``exclude`` holds fnmatch globs, each matched against an entry's path
    relative to ``root`` (``/``-separated) and against its base name; an
    excluded folder is skipped with everything in it. Large files ``known``
    knows are not read (their content is ``known.skip``-ped), nor are runs of
    small entries it knows (``known.skip_run``; their entries are stat-ed).

    Returns the number of entries written (the root folder included) and the
    bytes of file content written. Raises ``SourceError`` when ``root`` is not an
    existing folder, when a file or folder cannot be read (the message names
    it) or when a file changes size while it is read.
    """
    root_stat = _root_stat(root)
    tree = _TreeWriter(TarWriter(out), known)
    entries = _Lookahead(_walk(os.fsencode(root), exclude))
    looks_up = known if known is not None and known.looks_up_runs else None
    if looks_up is None:
        tree.directory(b".", root_stat)
    else:
        run = _gather(entries, looks_up, root_stat)
        if not tree.skipped(run):
            tree.directory(b".", root_stat)
            for each in run.entries:
                tree.entry(*each)
    for name, entry in entries:
        if looks_up is not None and tree.may_start_run(entry):
            entries.put_back((name, entry))
            run = _gather(entries, looks_up, None)
            if not tree.skipped(run):
                for each in run.entries:
                    tree.entry(*each)
        else:
            tree.entry(name, entry)
    return tree.close()


_Named = tuple[bytes, os.DirEntry[bytes]]


class _Lookahead:
    """An iterator of walked entries that takes back the one last taken."""

    def __init__(self, entries: Iterator[_Named]) -> None:
        self._entries = entries
        self._back: _Named | None = None

    def __iter__(self) -> _Lookahead:
        return self

    def __next__(self) -> _Named:
        if self._back is not None:
            named, self._back = self._back, None
            return named
        return next(self._entries)

    def put_back(self, named: _Named) -> None:
        self._back = named


@dataclass(frozen=True)
class _Run:
    """A run of small entries as stat-ed ahead, before deciding to read it."""

    entries: list[_Named]
    """The walked entries in it (not the root folder)."""
    description: bytes | None
    """``describe`` of each entry, or None when one could not be stat-ed (it is read)."""
    count: int
    content_bytes: int


def _gather(entries: _Lookahead, known: KnownFiles, root_stat: os.stat_result | None) -> _Run:
    """Stat the entries of the run that starts with the next one (with the
    root folder given its ``root_stat``), up to the next folder or large file,
    which is put back. Opens nothing: symbolic links are read, files stat-ed."""
    taken: list[_Named] = []
    described = [describe(b".", tarfile.DIRTYPE, root_stat)] if root_stat is not None else []
    content, complete = 0, True
    for name, entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                if taken or root_stat is not None:
                    entries.put_back((name, entry))
                    break
                described.append(describe(name, tarfile.DIRTYPE, entry.stat(follow_symlinks=False)))
            elif entry.is_file(follow_symlinks=False):
                st = entry.stat(follow_symlinks=False)
                if st.st_size >= known.min_size:
                    entries.put_back((name, entry))
                    break
                described.append(describe(name, tarfile.REGTYPE, st, st.st_size))
                content += st.st_size
            elif entry.is_symlink():
                st = entry.stat(follow_symlinks=False)
                target = os.readlink(entry.path)
                described.append(describe(name, tarfile.SYMTYPE, st, linkname=target))
            else:
                continue  # socket, FIFO or device: never written
        except FileNotFoundError:
            pass  # deleted since its folder was listed: left out when written too
        except OSError:
            complete = False  # reading it reports why
        taken.append((name, entry))
    description = b"".join(described) if complete and described else None
    return _Run(taken, description, len(described), content)


class _TreeWriter:
    """Writes walked entries to the tar writer; with ``known``, says where each
    run of small entries starts and ends, with the description of what it wrote."""

    def __init__(self, writer: TarWriter, known: KnownFiles | None) -> None:
        self._writer = writer
        self._known = known
        self._run: list[bytes] | None = None  # descriptions of the run being written
        self.items = 0
        self.content_bytes = 0

    def may_start_run(self, entry: os.DirEntry[bytes]) -> bool:
        """Whether a run starts with ``entry``: a folder, or a small file or link
        after a large file (a large file, lstat-ed here, never does)."""
        try:
            if entry.is_dir(follow_symlinks=False):
                return True
            if self._run is not None:
                return False
            if entry.is_file(follow_symlinks=False):
                assert self._known is not None
                return entry.stat(follow_symlinks=False).st_size < self._known.min_size
            return entry.is_symlink()
        except OSError:
            return False  # writing it reports why, or leaves it out

    def skipped(self, run: _Run) -> bool:
        """Skip ``run`` when ``known`` knows it; False when it must be written."""
        known = self._known
        if known is None or run.description is None:
            return False
        size = known.known_run(run.description)
        if size is None:
            return False
        self._end_run()
        self._writer.run_starts(known)
        self._writer.skip_run(size, known)
        self.items += run.count
        self.content_bytes += run.content_bytes
        return True

    def directory(self, name: bytes, st: os.stat_result) -> None:
        """A folder's entry, which starts a run."""
        self._end_run()
        self._start_run()
        self._writer.header(name, tarfile.DIRTYPE, st)
        self._described(name, tarfile.DIRTYPE, st)
        self.items += 1

    def entry(self, name: bytes, entry: os.DirEntry[bytes]) -> None:
        """Write one walked entry. Raises ``SourceError`` naming it when it cannot be read."""
        path = entry.path
        try:
            if entry.is_file(follow_symlinks=False):
                self._file(name, path)
            elif entry.is_dir(follow_symlinks=False):
                self.directory(name, entry.stat(follow_symlinks=False))
            elif entry.is_symlink():
                self._symlink(name, entry)
        except FileNotFoundError:
            pass  # deleted since its folder was listed
        except OSError as exc:
            raise SourceError(
                f"the path {os.fsdecode(path)} in the source cannot be read ({exc.strerror})"
            ) from exc

    def close(self) -> SourceStats:
        self._end_run()
        self._writer.close()
        return SourceStats(items=self.items, content_bytes=self.content_bytes)

    def _start_run(self) -> None:
        if self._known is not None:
            self._writer.run_starts(self._known)
        self._run = []

    def _end_run(self) -> None:
        if self._run is not None:
            if self._known is not None:
                self._writer.run_ends(self._known, b"".join(self._run))
            self._run = None

    def _described(
        self, name: bytes, kind: bytes, st: os.stat_result, size: int = 0, link: bytes = b""
    ) -> None:
        if self._run is not None and self._known is not None:
            self._run.append(describe(name, kind, st, size, link))

    def _symlink(self, name: bytes, entry: os.DirEntry[bytes]) -> None:
        link = _read_symlink(entry)
        if link is not None:
            st, target = link
            if self._run is None:
                self._start_run()
            self._writer.header(name, tarfile.SYMTYPE, st, linkname=target)
            self._described(name, tarfile.SYMTYPE, st, link=target)
            self.items += 1

    def _file(self, name: bytes, path: bytes) -> None:
        fd = _open_file(path)
        if fd is None:
            return
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise SourceError(
                    f"the file {os.fsdecode(path)} was replaced while the backup was reading it"
                )
            size = st.st_size
            known = self._known
            if known is not None and size >= known.min_size:
                self._end_run()  # a large file is outside runs
                self._writer.header(name, tarfile.REGTYPE, st, size=size)
                if known.known(name, st):
                    self._writer.skip(size, known)
                else:
                    _copy_exactly(fd, size, self._writer, path)
                self._writer.pad()
            else:
                if self._run is None:
                    self._start_run()
                _write_small(self._writer, name, fd, st, path)
                self._described(name, tarfile.REGTYPE, st, size)
        except OSError as exc:
            raise SourceError(
                f"the file {os.fsdecode(path)} in the source cannot be read ({exc.strerror})"
            ) from exc
        finally:
            os.close(fd)
        self.items += 1
        self.content_bytes += size


def _write_small(writer: TarWriter, name: bytes, fd: int, st: os.stat_result, path: bytes) -> None:
    """A file outside large files' place: read whole below ``SMALL_FILE``, else streamed."""
    size = st.st_size
    if size < SMALL_FILE:
        writer.small_file(name, st, _read_small(fd, size, path))
        return
    writer.header(name, tarfile.REGTYPE, st, size=size)
    _copy_exactly(fd, size, writer, path)
    writer.pad()


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


def _read_symlink(entry: os.DirEntry[bytes]) -> tuple[os.stat_result, bytes] | None:
    """A symbolic link's stat and target; None when the link has disappeared.

    Raises ``SourceError`` naming the link when it cannot be read."""
    try:
        return entry.stat(follow_symlinks=False), os.readlink(entry.path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SourceError(
            f"the symbolic link {os.fsdecode(entry.path)} in the source cannot be read"
            f" ({exc.strerror})"
        ) from exc


_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def _open_file(path: bytes) -> int | None:
    """A regular file opened for reading; None if it vanished.

    Raises ``SourceError`` naming the file when it cannot be opened or was
    replaced by a symbolic link."""
    try:
        # O_NOFOLLOW and O_NONBLOCK: if the file was swapped for a symlink or a
        # FIFO since it was listed, fail or return instead of following/blocking.
        return os.open(path, _OPEN_FLAGS)
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
