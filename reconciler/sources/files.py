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

Headers come from ``tarfile.TarInfo.tobuf``; the data is streamed to ``out``
here, one chunk at a time, so no file is ever held whole in memory.

``restore_tree`` and ``read_tree`` read such a stream with ``tarfile`` in
stream mode. They refuse (``IntegrityError``) anything a restore could be
tricked with: absolute names, ``..`` components, entries below a symbolic link
of the same archive, duplicate names, hard links, devices and FIFOs. Because
``tarfile`` quietly treats a damaged or missing header as the end of the
archive, both also check that the archive ends with the two zero blocks every
tar writer puts there, so truncation is detected.
"""

from __future__ import annotations

import errno
import fnmatch
import grp
import io
import os
import pwd
import re
import stat
import tarfile
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from reconciler.errors import IntegrityError, RestoreError, SourceError
from reconciler.sources.stats import CHUNK_SIZE, ByteSink, ByteSource, SourceStats

_BLOCK = tarfile.BLOCKSIZE
_RECORD = tarfile.RECORDSIZE
_END_OF_ARCHIVE = bytes(2 * _BLOCK)
_ENCODING = "utf-8"
# Names that are not valid UTF-8 survive the round trip as the same bytes.
_ERRORS = "surrogateescape"
_NS_PER_SECOND = 1_000_000_000
_READ_BUFFER = 64 * 1024
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
    for member, _parts, archive in _members(stream, _MemberCheck()):
        _mtime_ns(member)
        if member.isreg():
            for chunk in _member_chunks(archive, member):
                content_bytes += len(chunk)
        items += 1
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
    restorer = _Restorer(str(target), check)
    items, content_bytes = 0, 0
    for member, parts, archive in _members(stream, check):
        if member.isdir():
            restorer.directory(parts, member)
        elif member.issym():
            restorer.symlink(parts, member)
        else:
            content_bytes += restorer.file(parts, member, _member_chunks(archive, member))
        items += 1
    restorer.finish()
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


def _members(
    stream: ByteSource, check: _MemberCheck
) -> Iterator[tuple[tarfile.TarInfo, tuple[str, ...], tarfile.TarFile]]:
    """Yield each member with its checked name parts and the open archive.

    The caller must read a regular member's data before asking for the next
    one (stream mode). After the last member, checks the end-of-archive marker
    and reads the stream to its end. Raises ``IntegrityError``."""
    tail = _TailReader(stream, keep=2 * _READ_BUFFER + len(_END_OF_ARCHIVE))
    try:
        # Not a with-statement: the with below must not cover this except.
        archive = tarfile.open(  # noqa: SIM115
            fileobj=tail, mode="r|", bufsize=_READ_BUFFER, encoding=_ENCODING, errors=_ERRORS
        )
    except tarfile.TarError as exc:
        raise IntegrityError(
            f"the file tree in the backup is not a valid tar archive ({exc})"
        ) from exc
    with archive:
        while True:
            try:
                member = archive.next()
            except tarfile.TarError as exc:
                raise IntegrityError(
                    f"the file tree in the backup is damaged after {archive.offset} bytes ({exc})"
                ) from exc
            if member is None:
                break
            yield member, check.check(member), archive
        # tarfile stops at the first header it cannot parse as if it were the
        # end; only a real end-of-archive marker there proves nothing is lost.
        end = archive.offset
    if tail.bytes_at(end, len(_END_OF_ARCHIVE)) != _END_OF_ARCHIVE:
        raise IntegrityError(
            f"the file tree in the backup is truncated or damaged after {end} bytes"
        )
    tail.drain()


def _member_chunks(archive: tarfile.TarFile, member: tarfile.TarInfo) -> Iterator[bytes]:
    """Yield the data of a regular member in chunks; raises ``IntegrityError``."""
    reader = archive.extractfile(member)
    if reader is None:
        raise IntegrityError(f"the entry {member.name!r} in the backup has no data")
    remaining = member.size
    with reader:
        while remaining > 0:
            try:
                chunk = reader.read(min(CHUNK_SIZE, remaining))
            except tarfile.TarError as exc:
                raise IntegrityError(
                    f"the entry {member.name!r} in the backup is truncated ({exc})"
                ) from exc
            if not chunk:
                raise IntegrityError(f"the entry {member.name!r} in the backup is truncated")
            remaining -= len(chunk)
            yield chunk


def _mtime_ns(member: tarfile.TarInfo) -> int:
    """The exact mtime of a member in nanoseconds; raises ``IntegrityError``.

    ``TarInfo.mtime`` went through a float, so the PAX record is parsed here."""
    text = member.pax_headers.get("mtime")
    if text is None:
        return int(member.mtime) * _NS_PER_SECOND
    ns = _parse_ns(text)
    if ns is None:
        raise IntegrityError(f"the entry {member.name!r} in the backup has a malformed mtime")
    return ns


def _permissions(member: tarfile.TarInfo) -> int:
    """The permission bits (setuid, setgid and sticky included) of a member.

    tarfile does not mask the mode field, so a crafted header could carry
    file type bits."""
    return stat.S_IMODE(member.mode)


class _MemberCheck:
    """Refuses members that could make a restore write outside its target.

    Remembers every name (to refuse duplicates, which could replace a file by
    a link) and every symbolic link (to refuse entries below one)."""

    def __init__(self) -> None:
        self.seen: set[tuple[str, ...]] = set()
        self._links: set[tuple[str, ...]] = set()

    def check(self, member: tarfile.TarInfo) -> tuple[str, ...]:
        """The name of ``member`` as path parts ("." is the root, ``()``).

        Raises ``IntegrityError`` naming the entry when it is unsafe."""
        name = member.name
        parts = _name_parts(name)
        _check_type(member)
        if not parts and not member.isdir():
            raise IntegrityError(f"the root entry {name!r} in the backup is not a folder")
        if self._links:
            for depth in range(1, len(parts)):
                if parts[:depth] in self._links:
                    raise IntegrityError(
                        f"the entry {name!r} in the backup lies below the symbolic link "
                        f"{'/'.join(parts[:depth])!r} and could be written outside the target"
                    )
        if parts in self.seen:
            raise IntegrityError(f"the entry {name!r} appears twice in the backup")
        self.seen.add(parts)
        if member.issym():
            self._links.add(parts)
        return parts


def _name_parts(name: str) -> tuple[str, ...]:
    """The components of a relative member name; raises ``IntegrityError``."""
    if name.startswith("/"):
        raise IntegrityError(f"the entry {name!r} in the backup has an absolute name")
    if "\0" in name:
        raise IntegrityError(f"the entry {name!r} in the backup has a NUL byte in its name")
    parts = tuple(part for part in name.split("/") if part not in ("", "."))
    if ".." in parts:
        raise IntegrityError(f"the entry {name!r} in the backup climbs out of its folder with '..'")
    return parts


def _check_type(member: tarfile.TarInfo) -> None:
    """Accept files, folders and symlinks only; raises ``IntegrityError``."""
    if member.isreg() or member.isdir() or member.issym():
        return
    if member.islnk():
        kind = "a hard link"
    elif member.ischr() or member.isblk():
        kind = "a device"
    elif member.isfifo():
        kind = "a FIFO"
    else:
        kind = f"an unsupported type {member.type!r}"
    raise IntegrityError(
        f"the entry {member.name!r} in the backup is {kind}, which is not restored"
    )


@dataclass(frozen=True)
class _FolderMeta:
    depth: int
    path: str
    mode: int
    mtime_ns: int
    uid: int
    gid: int


class _Restorer:
    """Creates members below ``target``, never through a symbolic link.

    Folder modes and mtimes are applied by ``finish``, deepest first: writing a
    child changes its folder's mtime, and a read-only folder could not receive
    its children."""

    def __init__(self, target: str, check: _MemberCheck) -> None:
        self._target = target
        self._check = check
        self._as_root = os.geteuid() == 0
        self._folders: list[_FolderMeta] = []
        self._checked_parent: tuple[str, ...] | None = None

    def directory(self, parts: tuple[str, ...], member: tarfile.TarInfo) -> None:
        """Create a folder (or accept one made earlier as a parent)."""
        path = self._target
        if parts:
            self._parent(parts)
            path = os.path.join(self._target, *parts)
            try:
                # Private until finish() applies the stored mode.
                os.mkdir(path, 0o700)
            except FileExistsError:
                if not stat.S_ISDIR(os.lstat(path).st_mode):
                    raise RestoreError(
                        f"the restore target already holds {path}, which is not a folder"
                    ) from None
            except OSError as exc:
                raise RestoreError(f"the folder {path} cannot be created ({exc.strerror})") from exc
        self._folders.append(
            _FolderMeta(
                len(parts), path, _permissions(member), _mtime_ns(member), member.uid, member.gid
            )
        )

    def symlink(self, parts: tuple[str, ...], member: tarfile.TarInfo) -> None:
        """Create a symbolic link as a link, with its owner and mtime."""
        self._parent(parts)
        path = os.path.join(self._target, *parts)
        mtime = _mtime_ns(member)
        try:
            os.symlink(member.linkname, path)
        except FileExistsError:
            raise RestoreError(f"the restore target already holds {path}") from None
        except OSError as exc:
            raise RestoreError(
                f"the symbolic link {path} cannot be created ({exc.strerror})"
            ) from exc
        self._own(path, member)
        try:
            os.utime(path, ns=(mtime, mtime), follow_symlinks=False)
        except OSError as exc:
            raise RestoreError(f"the mtime of {path} cannot be set ({exc.strerror})") from exc

    def file(self, parts: tuple[str, ...], member: tarfile.TarInfo, chunks: Iterator[bytes]) -> int:
        """Create a regular file from ``chunks``; returns its size."""
        self._parent(parts)
        path = os.path.join(self._target, *parts)
        mtime = _mtime_ns(member)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(path, flags, 0o600)
        except FileExistsError:
            raise RestoreError(f"the restore target already holds {path}") from None
        except OSError as exc:
            raise RestoreError(f"the file {path} cannot be created ({exc.strerror})") from exc
        size = 0
        try:
            for chunk in chunks:
                _write_all(fd, chunk)
                size += len(chunk)
            # Owner before mode: chown clears the setuid and setgid bits.
            self._own(fd, member)
            os.fchmod(fd, _permissions(member))
            os.utime(fd, ns=(mtime, mtime))
        except OSError as exc:
            raise RestoreError(f"the file {path} cannot be written ({exc.strerror})") from exc
        finally:
            os.close(fd)
        return size

    def finish(self) -> None:
        """Apply owners, modes and mtimes of folders, deepest first."""
        for meta in sorted(self._folders, key=lambda meta: meta.depth, reverse=True):
            try:
                if self._as_root:
                    _chown_best_effort(meta.path, meta.uid, meta.gid)
                os.chmod(meta.path, meta.mode)
                os.utime(meta.path, ns=(meta.mtime_ns, meta.mtime_ns), follow_symlinks=False)
            except OSError as exc:
                raise RestoreError(
                    f"the mode and mtime of the folder {meta.path} cannot be set ({exc.strerror})"
                ) from exc

    def _own(self, path: str | int, member: tarfile.TarInfo) -> None:
        if self._as_root:
            _chown_best_effort(path, member.uid, member.gid)

    def _parent(self, parts: tuple[str, ...]) -> None:
        """Make sure every folder above ``parts`` is a real folder, creating missing ones.

        Raises ``IntegrityError`` when the archive itself put a non-folder
        there and ``RestoreError`` when the target already held one."""
        parent = parts[:-1]
        if parent == self._checked_parent:
            return  # entries come sorted: most share the previous one's parent
        path = self._target
        for depth, part in enumerate(parent, start=1):
            path = os.path.join(path, part)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                try:
                    os.mkdir(path)
                except OSError as exc:
                    raise RestoreError(
                        f"the folder {path} cannot be created ({exc.strerror})"
                    ) from exc
                continue
            if stat.S_ISDIR(st.st_mode):
                continue  # lstat: a symbolic link to a folder is not S_ISDIR
            name = "/".join(parts)
            if parent[:depth] in self._check.seen:
                raise IntegrityError(
                    f"the entry {name!r} in the backup lies below {'/'.join(parent[:depth])!r}, "
                    "which the backup makes something other than a folder"
                )
            raise RestoreError(
                f"the restore target already holds {path}, which is not a folder, "
                f"where the backup has a folder for {name!r}"
            )
        self._checked_parent = parent


def _chown_best_effort(path: str | int, uid: int, gid: int) -> None:
    """Set the owner without following links; an owner the system refuses is skipped."""
    try:
        if isinstance(path, int):
            os.chown(path, uid, gid)
        else:
            os.chown(path, uid, gid, follow_symlinks=False)
    except OSError:
        pass  # e.g. an id unknown to a user namespace: keep the restoring user's


def _write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd`` (``os.write`` may write less)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class _TailReader:
    """Passes reads through to ``stream`` and keeps the last ``keep`` bytes read.

    ``tarfile`` reads ahead into its own buffer, so after it stops the bytes
    where the end-of-archive marker should be are among the last ones read (or
    not read yet): ``bytes_at`` finds them there. The other methods exist only
    because ``tarfile`` wants a file object."""

    def __init__(self, stream: ByteSource, keep: int) -> None:
        self._stream = stream
        self._keep = keep
        self._position = 0
        self._recent: deque[tuple[int, bytes]] = deque()
        self._kept = 0

    def read(self, size: int, /) -> bytes:
        data = self._stream.read(size)
        if data:
            self._recent.append((self._position, data))
            self._position += len(data)
            self._kept += len(data)
            while self._kept - len(self._recent[0][1]) >= self._keep:
                self._kept -= len(self._recent.popleft()[1])
        return data

    def bytes_at(self, start: int, length: int) -> bytes:
        """The bytes at ``start`` (which must still be kept), fewer at the end of the stream."""
        while self._position < start + length:
            if not self.read(start + length - self._position):
                break
        found = bytearray()
        for begin, data in self._recent:
            low = max(start, begin)
            high = min(start + length, begin + len(data))
            if low < high:
                found += data[low - begin : high - begin]
        return bytes(found)

    def drain(self) -> None:
        """Read the stream to its end (tar pads with zeros after the marker),
        so that a layer below sees all of it and can check it."""
        while self._stream.read(CHUNK_SIZE):
            pass

    def write(self, b: bytes, /) -> int:
        raise io.UnsupportedOperation("write")

    def tell(self) -> int:
        return self._position

    def seek(self, pos: int, /) -> int:
        raise io.UnsupportedOperation("seek")

    def close(self) -> None:
        pass
