"""The ``files`` source: a folder tree as a POSIX PAX tar stream, and back.

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

Names are handled as bytes from the folder listing to the archive, so any
name survives as it is. Headers are built here, byte for byte as
``tarfile.TarInfo.tobuf`` would (a test holds them to that), without a
``TarInfo`` per entry; small files are read whole and written together with
their headers in writes of up to ``CHUNK_SIZE``, larger ones are streamed one
chunk at a time, so no file is ever held whole in memory.

``restore_tree`` and ``read_tree`` read such a stream with a small streaming
parser of their own (``_ArchiveReader``), which hands file data over as views
of the chunks it reads. They refuse (``IntegrityError``) anything a restore
could be tricked with: absolute names, ``..`` components, entries below a
symbolic link of the same archive, duplicate names, hard links, devices and
FIFOs. A damaged header is an error, never taken for the end of the archive,
and the archive must end with the two zero blocks every tar writer puts
there, so truncation is detected.
"""

from __future__ import annotations

import errno
import fnmatch
import grp
import os
import pwd
import re
import stat
import struct
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from reconciler.errors import IntegrityError, RestoreError, SourceError
from reconciler.sources._small_file_worker import create_file, finish_file
from reconciler.sources.small_files import FileEnd, SmallFileWriters
from reconciler.sources.stats import CHUNK_SIZE, ByteSink, ByteSource, SourceStats

_BLOCK = tarfile.BLOCKSIZE
_RECORD = tarfile.RECORDSIZE
_END_OF_ARCHIVE = bytes(2 * _BLOCK)
_NS_PER_SECOND = 1_000_000_000
_PAX_TIME = re.compile(r"(-?)([0-9]+)(?:\.([0-9]*))?")


# --------------------------------------------------------------------------
# Backing up
# --------------------------------------------------------------------------


def write_tree(root: Path, exclude: tuple[str, ...], out: ByteSink) -> SourceStats:
    """Stream the tree under ``root`` to ``out`` as a PAX tar archive.

    ``exclude`` holds fnmatch globs, each matched against an entry's path
    relative to ``root`` (``/``-separated) and against its base name; an
    excluded folder is skipped with everything in it.

    Returns the number of entries written (the root folder included) and the
    bytes of file content read. Raises ``SourceError`` when ``root`` is not an
    existing folder, when a file or folder cannot be read (the message names
    it) or when a file changes size while it is read.
    """
    root_stat = _root_stat(root)
    writer = _TarWriter(out)
    writer.header(b".", tarfile.DIRTYPE, root_stat)
    items, content_bytes = 1, 0
    for name, entry in _walk(os.fsencode(root), exclude):
        path = entry.path
        try:
            if entry.is_file(follow_symlinks=False):
                size = _write_file(writer, name, path)
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


def _write_symlink(writer: _TarWriter, name: bytes, entry: os.DirEntry[bytes]) -> bool:
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


def _write_file(writer: _TarWriter, name: bytes, path: bytes) -> int | None:
    """Write a regular file's header and content; its size, or None if it vanished.

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
        if size < _SMALL_FILE:
            writer.small_file(name, st, _read_small(fd, size, path))
            return size
        writer.header(name, tarfile.REGTYPE, st, size=size)
        _copy_exactly(fd, size, writer, path)
    except OSError as exc:
        raise SourceError(
            f"the file {os.fsdecode(path)} in the source cannot be read ({exc.strerror})"
        ) from exc
    finally:
        os.close(fd)
    writer.pad()
    return size


_SMALL_FILE = 256 * 1024
"""Files below this size are read whole and written with their headers at once."""


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


def _copy_exactly(fd: int, size: int, writer: _TarWriter, path: bytes) -> None:
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


@lru_cache(maxsize=256)
def _user_name(uid: int) -> str:
    """The user name of ``uid``, or "" when it has none."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return ""


@lru_cache(maxsize=256)
def _group_name(gid: int) -> str:
    """The group name of ``gid``, or "" when it has none."""
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return ""


def _pax_ns(value: bytes) -> int | None:
    """``_parse_ns`` of a PAX record's value, the form write_tree writes first."""
    seconds, dot, fraction = value.partition(b".")
    if dot and seconds.isdigit() and fraction.isdigit() and len(fraction) <= 9:
        return int(seconds) * _NS_PER_SECOND + int(fraction.ljust(9, b"0"))
    return _parse_ns(value.decode("ascii", "replace"))


def _parse_ns(text: str) -> int | None:
    """A PAX time as nanoseconds since the epoch; None when it is malformed.

    Digits beyond nanoseconds are dropped."""
    match = _PAX_TIME.fullmatch(text)
    if match is None:
        return None
    sign, seconds, fraction = match.groups()
    ns = int(seconds) * _NS_PER_SECOND + int((fraction or "")[:9].ljust(9, "0"))
    return -ns if sign else ns


# The header layout is the one ``tarfile.TarInfo.tobuf(PAX_FORMAT)`` produces,
# byte for byte (a test holds it to that), built here without a TarInfo per
# entry: a PAX extended header whose records hold the exact mtime and whatever
# the ustar fields cannot (long or non-ASCII names, large ids and sizes), then
# the ustar header. The parts of a header that depend only on the owner are
# made once per owner.
_MAX_ID = 8**7
_MAX_SIZE = 8**11
_CHECKSUM_SPACES = b"        "
_NUMBERS = b"%07o\0%07o\0%07o\0%011o\0%011o\0"
_NO_DEVICE_AND_PREFIX = bytes(8 + 8 + 155 + 12)  # devmajor, devminor, prefix, padding


@dataclass(frozen=True)
class _Owner:
    """What the header of an entry owned by ``uid``/``gid`` holds about its owner."""

    uid: int
    gid: int
    tail: bytes
    """The header from the magic on: magic, user and group names, no device, no prefix."""
    tail_sum: int
    """The byte sum of ``tail`` and of the checksum field's spaces."""
    records: tuple[tuple[bytes, bytes], ...]
    """PAX records the owner needs (long or non-ASCII names, large ids)."""


@lru_cache(maxsize=256)
def _owner(uid: int, gid: int) -> _Owner:
    uname, gname = os.fsencode(_user_name(uid)), os.fsencode(_group_name(gid))
    records: list[tuple[bytes, bytes]] = []
    uname_field, long_uname = _ustar_text(uname, 32)
    if long_uname:
        records.append((b"uname", uname))
    gname_field, long_gname = _ustar_text(gname, 32)
    if long_gname:
        records.append((b"gname", gname))
    if not 0 <= uid < _MAX_ID:
        records.append((b"uid", b"%d" % uid))
        uid = 0
    if not 0 <= gid < _MAX_ID:
        records.append((b"gid", b"%d" % gid))
        gid = 0
    tail = b"".join(
        (
            tarfile.POSIX_MAGIC,
            uname_field.ljust(32, b"\0"),
            gname_field.ljust(32, b"\0"),
            _NO_DEVICE_AND_PREFIX,
        )
    )
    return _Owner(uid, gid, tail, sum(tail) + sum(_CHECKSUM_SPACES), tuple(records))


def _ustar_header(
    name: bytes,
    mode: int,
    owner: _Owner,
    size: int,
    mtime: int,
    kind: bytes,
    linkname: bytes,
) -> bytes:
    """One 512-byte ustar header block; ``name`` and ``linkname`` already fit."""
    numbers = _NUMBERS % (mode, owner.uid, owner.gid, size, mtime)
    checksum = owner.tail_sum + sum(name) + sum(numbers) + kind[0] + sum(linkname)
    return b"".join(
        (
            name.ljust(100, b"\0"),
            numbers,
            b"%06o\0 " % checksum,
            kind,
            linkname.ljust(100, b"\0"),
            owner.tail,
        )
    )


@lru_cache(maxsize=64)
def _pax_header_block(records_size: int) -> bytes:
    """The ustar block announcing ``records_size`` bytes of PAX records."""
    return _ustar_header(
        b"././@PaxHeader", 0, _owner_without_names(), records_size, 0, tarfile.XHDTYPE, b""
    )


@lru_cache(maxsize=1)
def _owner_without_names() -> _Owner:
    tail = tarfile.POSIX_MAGIC + bytes(64) + _NO_DEVICE_AND_PREFIX
    return _Owner(0, 0, tail, sum(tail) + sum(_CHECKSUM_SPACES), ())


def _ustar_text(value: bytes, limit: int) -> tuple[bytes, bool]:
    """The ustar field form of a name and whether it needs a PAX record too.

    As ``tarfile`` does: a value that is not ASCII or longer than the field
    goes into a PAX record; the field holds it with every non-ASCII character
    replaced by ``?``, cut to the field's length."""
    if value.isascii():
        return value[:limit], len(value) > limit
    return os.fsdecode(value).encode("ascii", "replace")[:limit], True


def _pax_record(keyword: bytes, value: bytes) -> bytes:
    """``"<length> <keyword>=<value>\\n"``, where the length counts itself."""
    length = len(keyword) + len(value) + 3
    total = length + len(str(length))
    if len(str(total)) != len(str(length)):
        total = length + len(str(total))
    return b"%d %s=%s\n" % (total, keyword, value)


def _pax_time(ns: int) -> bytes:
    """Nanoseconds since the epoch as an exact PAX time: ``-1.500000000``."""
    if ns >= 0:
        return b"%d.%09d" % divmod(ns, _NS_PER_SECOND)
    return b"-%d.%09d" % divmod(-ns, _NS_PER_SECOND)


def _header(
    name: bytes, kind: bytes, st: os.stat_result, size: int = 0, linkname: bytes = b""
) -> bytes:
    """The PAX extended header and the ustar header of one entry, with the mode,
    owner and exact mtime of ``st``."""
    if kind == tarfile.DIRTYPE and not name.endswith(b"/"):
        name += b"/"
    owner = _owner(st.st_uid, st.st_gid)
    mtime_ns = st.st_mtime_ns
    mtime = mtime_ns // _NS_PER_SECOND
    if not 0 <= mtime < _MAX_SIZE:
        mtime = 0  # the PAX record holds it
    records = _pax_record(b"mtime", _pax_time(mtime_ns))
    if len(name) > 100 or not name.isascii() or linkname or owner.records or size >= _MAX_SIZE:
        name, linkname, size, records = _long_header_fields(name, owner, size, linkname, records)
    return b"".join(
        (
            _pax_header_block(len(records)),
            records,
            bytes(-len(records) % _BLOCK),
            _ustar_header(name, stat.S_IMODE(st.st_mode), owner, size, mtime, kind, linkname),
        )
    )


def _long_header_fields(
    name: bytes, owner: _Owner, size: int, linkname: bytes, records: bytes
) -> tuple[bytes, bytes, int, bytes]:
    """Name, link name and size fields for ``_header`` and the PAX records, when
    something does not fit the ustar fields (tarfile's order of records)."""
    extra: list[tuple[bytes, bytes]] = []
    name_field, long_name = _ustar_text(name, 100)
    if long_name:
        extra.append((b"path", name))
    link_field, long_link = _ustar_text(linkname, 100)
    if long_link:
        extra.append((b"linkpath", linkname))
    extra.extend(owner.records)  # uname, gname, uid, gid: tarfile's order
    if size >= _MAX_SIZE:
        extra.append((b"size", b"%d" % size))
        size = 0
    if not all(_is_utf8(value) for _keyword, value in extra):
        # Names that are not UTF-8 are stored as their bytes (tarfile's way).
        records = b"21 hdrcharset=BINARY\n" + records
    records += b"".join(_pax_record(keyword, value) for keyword, value in extra)
    return name_field, link_field, size, records


def _is_utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class _TarWriter:
    """Writes the archive to ``out`` in writes of at most ``CHUNK_SIZE`` bytes.

    Small pieces (headers, small files, padding) are gathered and written
    together; a large file's chunks go to ``out`` as they are read."""

    def __init__(self, out: ByteSink) -> None:
        self._out = out
        self._offset = 0
        self._parts: list[bytes] = []
        self._pending = 0

    def write(self, data: bytes) -> None:
        size = len(data)
        if self._pending + size > CHUNK_SIZE:
            self._flush()
        if size >= CHUNK_SIZE // 2:
            self._flush()
            self._out.write(data)
        else:
            self._parts.append(data)
            self._pending += size
        self._offset += size

    def _flush(self) -> None:
        if self._parts:
            parts = self._parts
            self._out.write(parts[0] if len(parts) == 1 else b"".join(parts))
            self._parts = []
            self._pending = 0

    def header(
        self, name: bytes, kind: bytes, st: os.stat_result, *, size: int = 0, linkname: bytes = b""
    ) -> None:
        """Write the headers of an entry (a regular file's data follows)."""
        self.write(_header(name, kind, st, size, linkname))

    def small_file(self, name: bytes, st: os.stat_result, data: bytes) -> None:
        """Write a whole regular file: headers, ``data`` and its padding."""
        self.write(
            b"".join(
                (_header(name, tarfile.REGTYPE, st, len(data)), data, bytes(-len(data) % _BLOCK))
            )
        )

    def pad(self) -> None:
        """Fill the last block of the data just written with zeros."""
        remainder = self._offset % _BLOCK
        if remainder:
            self.write(bytes(_BLOCK - remainder))

    def close(self) -> None:
        """Write the end-of-archive marker and pad to a whole record, as tar does."""
        self.write(_END_OF_ARCHIVE)
        remainder = self._offset % _RECORD
        if remainder:
            self.write(bytes(_RECORD - remainder))
        self._flush()


# --------------------------------------------------------------------------
# Reading back
# --------------------------------------------------------------------------


def read_tree(stream: ByteSource) -> SourceStats:
    """Read a ``write_tree`` archive to its end without writing anything.

    Returns the number of entries and the bytes of file content in it. Raises
    ``IntegrityError`` when the archive is malformed, truncated or holds an
    entry that ``restore_tree`` would refuse."""
    items, content_bytes = 0, 0
    reader = _ArchiveReader(stream)
    check = _MemberCheck()
    while (member := reader.next_member()) is not None:
        check.check(member)
        if member.kind in _REGULAR:
            for chunk in reader.data(member):
                content_bytes += len(chunk)
        items += 1
    reader.finish()
    return SourceStats(items=items, content_bytes=content_bytes)


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
    check = _MemberCheck()
    restorer = _Restorer(os.fsencode(target), check)
    reader = _ArchiveReader(stream)
    items, content_bytes = 0, 0
    try:
        while (member := reader.next_member()) is not None:
            parts = check.check(member)
            kind = member.kind
            if kind in _REGULAR:
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


_REGULAR = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE)
_ZERO_BLOCK = bytes(_BLOCK)
_READ_SIZE = 4 * CHUNK_SIZE
"""What the archive reader asks its stream for at a time (a reader may return less)."""


class _Member:
    """One entry of an archive, with its PAX records applied."""

    __slots__ = ("gid", "kind", "linkname", "mode", "mtime_ns", "name", "size", "uid")

    def __init__(
        self,
        name: bytes,
        kind: bytes,
        mode: int,
        uid: int,
        gid: int,
        size: int,
        mtime_ns: int,
        linkname: bytes,
    ) -> None:
        self.name = name
        self.kind = kind
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.size = size
        self.mtime_ns = mtime_ns
        self.linkname = linkname

    @property
    def shown(self) -> str:
        """The name for messages."""
        return os.fsdecode(self.name)


class _ArchiveReader:
    """Reads a POSIX (PAX or ustar) tar stream member by member.

    Reads the stream in large chunks and hands out file data as views of
    them, without copying. Stricter than ``tarfile``: a damaged header is an
    ``IntegrityError`` rather than the end of the archive, the archive must
    end with the two zero blocks every tar writer puts there, and PAX global
    headers, GNU long names and sparse files (none of which ``write_tree``
    writes) are refused."""

    def __init__(self, stream: ByteSource) -> None:
        self._stream = stream
        self._buffer = b""
        self._pos = 0
        self._offset = 0
        """Bytes of the archive consumed so far."""
        self._members = 0
        self._pax_blocks: dict[bytes, int] = {}
        """PAX header blocks already checked, with the size they announce."""

    # -- bytes

    def _next_chunk(self) -> bool:
        """Replace the used-up buffer by the next chunk; False at the end of the stream."""
        chunk = self._stream.read(_READ_SIZE)
        if not chunk:
            return False
        self._buffer, self._pos = chunk, 0
        return True

    def _take(self, size: int) -> bytes | None:
        """The next ``size`` bytes, None when the stream ends first."""
        start = self._pos
        if start + size <= len(self._buffer):
            self._pos = start + size
            self._offset += size
            return self._buffer[start : start + size]
        parts = [self._buffer[start:]]
        got = len(parts[0])
        while got < size:
            if not self._next_chunk():
                return None
            piece = self._buffer[: size - got]
            self._pos = len(piece)
            parts.append(piece)
            got += len(piece)
        self._offset += size
        return b"".join(parts)

    def _skip(self, size: int) -> bool:
        """Skip ``size`` bytes; False when the stream ends first."""
        while size:
            if self._pos >= len(self._buffer) and not self._next_chunk():
                return False
            step = min(size, len(self._buffer) - self._pos)
            self._pos += step
            self._offset += step
            size -= step
        return True

    # -- members

    def next_member(self) -> _Member | None:
        """The next member, or None after the end-of-archive marker.

        Raises ``IntegrityError`` for anything malformed or truncated."""
        pax: dict[bytes, bytes] | None = None
        while True:
            start = self._offset
            block = self._take(_BLOCK)
            if block is None:
                if self._members == 0 and pax is None and start == 0:
                    raise IntegrityError(
                        "the file tree in the backup is not a valid tar archive (empty file)"
                    )
                raise self._truncated(start)
            if block == _ZERO_BLOCK:
                if pax is not None:
                    raise self._damaged(start, "a PAX header is not followed by an entry")
                if self._take(_BLOCK) != _ZERO_BLOCK:
                    raise self._truncated(start)
                return None
            kind = block[156:157]
            known_size = self._pax_blocks.get(block)
            if known_size is not None:
                # The same PAX header block as one already checked: write_tree's
                # blocks differ only in their size field, so this saves parsing
                # one block of every entry.
                pax = self._pax(start, pax, known_size)
                continue
            try:
                header = _parse_header(block)
            except ValueError as exc:
                if self._members == 0 and pax is None:
                    raise IntegrityError(
                        f"the file tree in the backup is not a valid tar archive ({exc})"
                    ) from None
                raise self._damaged(start, str(exc)) from None
            if kind == tarfile.XHDTYPE:
                pax = self._pax(start, pax, header.size)
                if len(self._pax_blocks) < 64:
                    self._pax_blocks[block] = header.size
                continue
            if pax:
                try:
                    _apply_pax(header, pax)
                except ValueError as exc:
                    raise IntegrityError(
                        f"the entry {header.shown!r} in the backup has a malformed {exc}"
                    ) from None
            if header.kind == tarfile.AREGTYPE and header.name.endswith(b"/"):
                header.kind = tarfile.DIRTYPE
            if header.kind == tarfile.DIRTYPE and len(header.name) > 1:
                header.name = header.name.rstrip(b"/") or b"/"
            self._members += 1
            return header

    def _pax(self, start: int, pax: dict[bytes, bytes] | None, size: int) -> dict[bytes, bytes]:
        """The records of the PAX extended header whose block was just read."""
        if pax is not None:
            raise self._damaged(start, "two PAX headers in a row")
        data = self._take(size)
        if data is None or not self._skip(-size % _BLOCK):
            raise self._truncated(start)
        try:
            return _parse_pax(data)
        except ValueError as exc:
            raise self._damaged(start, str(exc)) from None

    def data(self, member: _Member) -> Iterator[memoryview]:
        """The data of a regular member, as views that are valid until the next
        call; skips the padding after it. Raises ``IntegrityError`` when cut short."""
        remaining = member.size
        while remaining:
            if self._pos >= len(self._buffer) and not self._next_chunk():
                raise IntegrityError(f"the entry {member.shown!r} in the backup is truncated")
            start = self._pos
            step = min(remaining, len(self._buffer) - start)
            self._pos = start + step
            self._offset += step
            remaining -= step
            yield memoryview(self._buffer)[start : start + step]
        if not self._skip(-member.size % _BLOCK):
            raise IntegrityError(f"the entry {member.shown!r} in the backup is truncated")

    def whole_data(self, member: _Member) -> memoryview | None:
        """All the data of a small regular member as one view, its padding skipped;
        None (and nothing consumed) when it is not all in the current chunk."""
        start = self._pos
        size = member.size
        end = start + size + (-size % _BLOCK)
        if end > len(self._buffer) or size > _SMALL_FILE:
            return None
        self._pos = end
        self._offset += end - start
        return memoryview(self._buffer)[start : start + size]

    def finish(self) -> None:
        """Read the stream to its end (tar pads with zeros after the marker), so
        that a layer below sees all of it and can check it."""
        while self._stream.read(CHUNK_SIZE):
            pass

    def _truncated(self, offset: int) -> IntegrityError:
        return IntegrityError(
            f"the file tree in the backup is truncated or damaged after {offset} bytes"
        )

    def _damaged(self, offset: int, problem: str) -> IntegrityError:
        return IntegrityError(
            f"the file tree in the backup is damaged after {offset} bytes ({problem})"
        )


_HEADER_FIELDS = struct.Struct("100s8s8s8s12s12s8s1s100s6s")
"""name, mode, uid, gid, size, mtime, checksum, type, linkname, magic"""


def _parse_header(block: bytes) -> _Member:
    """A member from one ustar header block. Raises ValueError saying what is wrong.

    Parsed for every entry of every restore: one struct call, and octal fields
    read in place (``_number`` only for what is not plain octal)."""
    name, mode, uid, gid, size, mtime, checksum, kind, linkname, magic = _HEADER_FIELDS.unpack_from(
        block
    )
    stored = _octal(checksum)
    unsigned = sum(block) - sum(checksum) + 256
    if stored != unsigned and stored != _signed_checksum(block):
        raise ValueError("bad checksum")
    name = name.split(b"\0", 1)[0]
    if magic == tarfile.POSIX_MAGIC[:6]:
        prefix = block[345:500].split(b"\0", 1)[0]
        if prefix:
            name = prefix + b"/" + name
    return _Member(
        name,
        kind,
        _octal(mode),
        _octal(uid),
        _octal(gid),
        _octal(size),
        _octal(mtime) * _NS_PER_SECOND,
        linkname.split(b"\0", 1)[0],
    )


def _octal(field: bytes) -> int:
    """``_number(field)``, the plain octal case (NUL or space ended) first."""
    if field[0] < 0o200:
        try:
            return int(field.split(b"\0", 1)[0], 8)  # int() strips spaces itself
        except ValueError:
            pass  # empty, or not octal: _number says which
    return _number(field)


def _signed_checksum(block: bytes) -> int:
    """The checksum some old tar writers made, summing the bytes as signed chars."""
    return 256 + sum(b - 256 if b > 127 else b for i, b in enumerate(block) if not 148 <= i < 156)


def _number(field: bytes) -> int:
    """A numeric header field: octal text, or GNU base-256. Raises ValueError."""
    if field and field[0] in (0o200, 0o377):
        value = 0
        for byte in field[1:]:
            value = (value << 8) + byte
        if field[0] == 0o377:
            value -= 256 ** (len(field) - 1)
        return value
    text = field.split(b"\0", 1)[0].strip()
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise ValueError("invalid header") from None


_PAX_RECORD = re.compile(rb"(\d+) ([^=]+)=")


def _parse_pax(data: bytes) -> dict[bytes, bytes]:
    """The records of a PAX extended header. Raises ValueError when malformed."""
    records: dict[bytes, bytes] = {}
    space = data.find(b" ", 0, 12)
    if space > 0 and data[:space].isdigit() and int(data[:space]) == len(data):
        # One record filling the data, as write_tree writes mtime: no regex.
        keyword, equals, value = data[space + 1 : -1].partition(b"=")
        if equals and keyword and data[-1:] == b"\n":
            records[keyword] = value
            return records
    pos = 0
    while pos < len(data):
        if data[pos] == 0:
            break  # zero padding inside the declared size
        match = _PAX_RECORD.match(data, pos)
        if match is None:
            raise ValueError("a PAX record is malformed")
        length = int(match.group(1))
        end = pos + length
        if length == 0 or end > len(data) or data[end - 1 : end] != b"\n":
            raise ValueError("a PAX record is malformed")
        records[match.group(2)] = data[match.end() : end - 1]
        pos = end
    return records


def _apply_pax(member: _Member, pax: dict[bytes, bytes]) -> None:
    """Apply PAX records to ``member``. Raises ValueError naming a malformed field."""
    if len(pax) == 1 and (mtime := pax.get(b"mtime")) is not None:
        # What write_tree writes for most entries: the exact mtime alone.
        ns = _pax_ns(mtime)
        if ns is None:
            raise ValueError("mtime")
        member.mtime_ns = ns
        return
    if (path := pax.get(b"path")) is not None:
        member.name = path
    if (linkpath := pax.get(b"linkpath")) is not None:
        member.linkname = linkpath
    for keyword in (b"size", b"uid", b"gid"):
        if (value := pax.get(keyword)) is not None:
            if not value.isdigit():
                raise ValueError(keyword.decode())
            setattr(member, keyword.decode(), int(value))
    if (mtime := pax.get(b"mtime")) is not None:
        ns = _pax_ns(mtime)
        if ns is None:
            raise ValueError("mtime")
        member.mtime_ns = ns
    for keyword in pax:
        if keyword.startswith(b"GNU.sparse"):
            raise ValueError("sparse file record")


def _permissions(member: _Member) -> int:
    """The permission bits (setuid, setgid and sticky included) of a member.

    The mode field is not masked by every writer, so a crafted header could
    carry file type bits."""
    return stat.S_IMODE(member.mode)


class _MemberCheck:
    """Refuses members that could make a restore write outside its target.

    Remembers every name (to refuse duplicates, which could replace a file by
    a link) and every symbolic link (to refuse entries below one)."""

    def __init__(self) -> None:
        self.seen: set[tuple[bytes, ...]] = set()
        self._links: set[tuple[bytes, ...]] = set()

    def check(self, member: _Member) -> tuple[bytes, ...]:
        """The name of ``member`` as path parts ("." is the root, ``()``).

        Raises ``IntegrityError`` naming the entry when it is unsafe."""
        parts = _name_parts(member)
        _check_type(member)
        if not parts and member.kind != tarfile.DIRTYPE:
            raise IntegrityError(f"the root entry {member.shown!r} in the backup is not a folder")
        if self._links:
            for depth in range(1, len(parts)):
                if parts[:depth] in self._links:
                    shown = os.fsdecode(b"/".join(parts[:depth]))
                    raise IntegrityError(
                        f"the entry {member.shown!r} in the backup lies below the symbolic link "
                        f"{shown!r} and could be written outside the target"
                    )
        if parts in self.seen:
            raise IntegrityError(f"the entry {member.shown!r} appears twice in the backup")
        self.seen.add(parts)
        if member.kind == tarfile.SYMTYPE:
            self._links.add(parts)
        return parts


def _name_parts(member: _Member) -> tuple[bytes, ...]:
    """The components of a relative member name; raises ``IntegrityError``."""
    name = member.name
    if name.startswith(b"/"):
        raise IntegrityError(f"the entry {member.shown!r} in the backup has an absolute name")
    if b"\0" in name:
        raise IntegrityError(f"the entry {member.shown!r} in the backup has a NUL byte in its name")
    parts = tuple(name.split(b"/"))
    if b"" in parts or b"." in parts:
        parts = tuple(part for part in parts if part not in (b"", b"."))
    if b".." in parts:
        raise IntegrityError(
            f"the entry {member.shown!r} in the backup climbs out of its folder with '..'"
        )
    return parts


def _check_type(member: _Member) -> None:
    """Accept files, folders and symlinks only; raises ``IntegrityError``."""
    kind = member.kind
    if kind in _REGULAR or kind in (tarfile.DIRTYPE, tarfile.SYMTYPE):
        return
    if kind == tarfile.LNKTYPE:
        what = "a hard link"
    elif kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        what = "a device"
    elif kind == tarfile.FIFOTYPE:
        what = "a FIFO"
    else:
        what = f"an unsupported type {kind!r}"
    raise IntegrityError(
        f"the entry {member.shown!r} in the backup is {what}, which is not restored"
    )


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

    def __init__(self, target: bytes, check: _MemberCheck) -> None:
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

    def directory(self, parts: tuple[bytes, ...], member: _Member) -> None:
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

    def symlink(self, parts: tuple[bytes, ...], member: _Member) -> None:
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

    def file(self, parts: tuple[bytes, ...], member: _Member, chunks: Iterator[memoryview]) -> None:
        """Create a regular file from ``chunks``, here, in order (the small files
        queued meanwhile are created by worker processes)."""
        self._parent(parts)
        path = self._path(parts)
        end = self._file_end(member)._replace(plain=False)
        fd = _create(path, end)
        try:
            for chunk in chunks:
                _write_all(fd, chunk)
            finish_file(fd, end.mtime_ns, end.mode, end.owner, end.plain)
        except OSError as exc:
            raise RestoreError(
                f"the file {os.fsdecode(path)} cannot be written ({exc.strerror})"
            ) from exc
        finally:
            os.close(fd)

    def _file_end(self, member: _Member) -> FileEnd:
        mode = _permissions(member)
        owner = None
        if self._as_root and (member.uid, member.gid) != self._ids:
            owner = (member.uid, member.gid)
        # Created with its final mode unless the umask would cut it or chown
        # could clear it (set-user/group-ID): then set after writing.
        plain = not mode & (stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX | self._umask)
        return FileEnd(mode, plain, owner, member.mtime_ns)

    def small_file(self, parts: tuple[bytes, ...], member: _Member, data: memoryview) -> None:
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

    def _own(self, path: bytes | int, member: _Member) -> None:
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


def _write_all(fd: int, data: memoryview) -> None:
    """Write all of ``data`` to ``fd`` (``os.write`` may write less)."""
    while data:
        written = os.write(fd, data)
        data = data[written:]


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
