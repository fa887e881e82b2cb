"""Encoding the ``files`` source's tar archive: headers, padding and writes.

Headers are built here, byte for byte as ``tarfile.TarInfo.tobuf`` would (a
test holds them to that), without a ``TarInfo`` per entry. Modes keep all
permission bits; mtimes are exact to the nanosecond in the PAX ``mtime``
record (the stdlib writes a float there, which is not exact, so we write the
decimal string ourselves).
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
import struct
import tarfile
from dataclasses import dataclass
from functools import lru_cache

from reconciler.sources.known_files import KnownFiles
from reconciler.sources.tar_format import BLOCK, NS_PER_SECOND, RECORD
from reconciler.streams import CHUNK_SIZE, ByteSink

_END_OF_ARCHIVE = bytes(2 * BLOCK)


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
        return b"%d.%09d" % divmod(ns, NS_PER_SECOND)
    return b"-%d.%09d" % divmod(-ns, NS_PER_SECOND)


def _header(
    name: bytes, kind: bytes, st: os.stat_result, size: int = 0, linkname: bytes = b""
) -> bytes:
    """The PAX extended header and the ustar header of one entry, with the mode,
    owner and exact mtime of ``st``."""
    if kind == tarfile.DIRTYPE and not name.endswith(b"/"):
        name += b"/"
    owner = _owner(st.st_uid, st.st_gid)
    mtime_ns = st.st_mtime_ns
    mtime = mtime_ns // NS_PER_SECOND
    if not 0 <= mtime < _MAX_SIZE:
        mtime = 0  # the PAX record holds it
    records = _pax_record(b"mtime", _pax_time(mtime_ns))
    if len(name) > 100 or not name.isascii() or linkname or owner.records or size >= _MAX_SIZE:
        name, linkname, size, records = _long_header_fields(name, owner, size, linkname, records)
    return b"".join(
        (
            _pax_header_block(len(records)),
            records,
            bytes(-len(records) % BLOCK),
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


_DESCRIPTION = struct.Struct(">cIQqqQQQQ")
"""kind, mode, size, mtime_ns, ctime_ns, inode, device, uid, gid."""


@lru_cache(maxsize=256)
def _owner_names(uid: int, gid: int) -> bytes:
    return b"%s\0%s\0" % (os.fsencode(_user_name(uid)), os.fsencode(_group_name(gid)))


def describe(
    name: bytes, kind: bytes, st: os.stat_result, size: int = 0, linkname: bytes = b""
) -> bytes:
    """What an entry's tar bytes are made from, as one byte string: the
    ``header`` arguments, the owner's names, and the stat fields that tell a
    file's content apart (size, mtime, ctime, inode, device), as the file
    cache trusts them. Descriptions of runs of entries concatenate
    unambiguously (a fixed part, then three NUL-ended strings: names and link
    targets hold no NUL)."""
    fixed = _DESCRIPTION.pack(
        kind,
        st.st_mode,
        size,
        st.st_mtime_ns,
        st.st_ctime_ns,
        st.st_ino,
        st.st_dev,
        st.st_uid,
        st.st_gid,
    )
    return b"%s%s\0%s\0%s" % (fixed, name, linkname, _owner_names(st.st_uid, st.st_gid))


class TarWriter:
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

    def skip(self, size: int, known: KnownFiles) -> None:
        """In place of ``write`` of a file's content: ``known`` has the ``size``
        bytes that follow what was written (everything before is flushed to
        it first). The archive's offsets, and so its padding, are unchanged."""
        self._flush()
        known.skip(size)
        self._offset += size

    def run_starts(self, known: KnownFiles) -> None:
        """A run of small entries starts with the next byte (see ``known_files``)."""
        self._flush()
        known.run_starts()

    def skip_run(self, size: int, known: KnownFiles) -> None:
        """In place of writing the run just started: ``known`` has its ``size`` bytes."""
        self._flush()
        known.skip_run(size)
        self._offset += size

    def run_ends(self, known: KnownFiles, entries: bytes) -> None:
        """The run written since ``run_starts`` ends here; ``entries`` describes it."""
        self._flush()
        known.run_ends(entries)

    def small_file(self, name: bytes, st: os.stat_result, data: bytes) -> None:
        """Write a whole regular file: headers, ``data`` and its padding."""
        self.write(
            b"".join(
                (_header(name, tarfile.REGTYPE, st, len(data)), data, bytes(-len(data) % BLOCK))
            )
        )

    def pad(self) -> None:
        """Fill the last block of the data just written with zeros."""
        remainder = self._offset % BLOCK
        if remainder:
            self.write(bytes(BLOCK - remainder))

    def close(self) -> None:
        """Write the end-of-archive marker and pad to a whole record, as tar does."""
        self.write(_END_OF_ARCHIVE)
        remainder = self._offset % RECORD
        if remainder:
            self.write(bytes(RECORD - remainder))
        self._flush()
