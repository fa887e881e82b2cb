"""Decoding and checking the ``files`` source's tar archive.

``ArchiveReader`` is a small streaming parser that hands file data over as
views of the chunks it reads. ``MemberCheck`` refuses (``IntegrityError``)
anything a restore could be tricked with: absolute names, ``..`` components,
entries below a symbolic link of the same archive, duplicate names, hard
links, devices and FIFOs. A damaged header is an error, never taken for the
end of the archive, and the archive must end with the two zero blocks every
tar writer puts there, so truncation is detected.
"""

from __future__ import annotations

import os
import re
import struct
import tarfile
from collections.abc import Iterator

from reconciler.errors import IntegrityError
from reconciler.sources.stats import SourceStats
from reconciler.sources.tar_format import BLOCK, NS_PER_SECOND, REGULAR_TYPES, SMALL_FILE
from reconciler.streams import CHUNK_SIZE, ByteSource

_PAX_TIME = re.compile(r"(-?)([0-9]+)(?:\.([0-9]*))?")
_ZERO_BLOCK = bytes(BLOCK)
_READ_SIZE = 4 * CHUNK_SIZE
"""What the archive reader asks its stream for at a time (a reader may return less)."""


def read_tree(stream: ByteSource) -> SourceStats:
    """Read a ``write_tree`` archive to its end without writing anything.

    Returns the number of entries and the bytes of file content in it. Raises
    ``IntegrityError`` when the archive is malformed, truncated or holds an
    entry that ``restore_tree`` would refuse."""
    items, content_bytes = 0, 0
    reader = ArchiveReader(stream)
    check = MemberCheck()
    while (member := reader.next_member()) is not None:
        check.check(member)
        if member.kind in REGULAR_TYPES:
            for chunk in reader.data(member):
                content_bytes += len(chunk)
        items += 1
    reader.finish()
    return SourceStats(items=items, content_bytes=content_bytes)


class Member:
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


class ArchiveReader:
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

    def next_member(self) -> Member | None:
        """The next member, or None after the end-of-archive marker.

        Raises ``IntegrityError`` for anything malformed or truncated."""
        pax: dict[bytes, bytes] | None = None
        while True:
            start = self._offset
            block = self._take(BLOCK)
            if block is None:
                if self._members == 0 and pax is None and start == 0:
                    raise IntegrityError(
                        "the file tree in the backup is not a valid tar archive (empty file)"
                    )
                raise self._truncated(start)
            if block == _ZERO_BLOCK:
                if pax is not None:
                    raise self._damaged(start, "a PAX header is not followed by an entry")
                if self._take(BLOCK) != _ZERO_BLOCK:
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
        if data is None or not self._skip(-size % BLOCK):
            raise self._truncated(start)
        try:
            return _parse_pax(data)
        except ValueError as exc:
            raise self._damaged(start, str(exc)) from None

    def data(self, member: Member) -> Iterator[memoryview]:
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
        if not self._skip(-member.size % BLOCK):
            raise IntegrityError(f"the entry {member.shown!r} in the backup is truncated")

    def whole_data(self, member: Member) -> memoryview | None:
        """All the data of a small regular member as one view, its padding skipped;
        None (and nothing consumed) when it is not all in the current chunk."""
        start = self._pos
        size = member.size
        end = start + size + (-size % BLOCK)
        if end > len(self._buffer) or size > SMALL_FILE:
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


def _parse_header(block: bytes) -> Member:
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
    return Member(
        name,
        kind,
        _octal(mode),
        _octal(uid),
        _octal(gid),
        _octal(size),
        _octal(mtime) * NS_PER_SECOND,
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


def _apply_pax(member: Member, pax: dict[bytes, bytes]) -> None:
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


def _pax_ns(value: bytes) -> int | None:
    """``_parse_ns`` of a PAX record's value, the form write_tree writes first."""
    seconds, dot, fraction = value.partition(b".")
    if dot and seconds.isdigit() and fraction.isdigit() and len(fraction) <= 9:
        return int(seconds) * NS_PER_SECOND + int(fraction.ljust(9, b"0"))
    return _parse_ns(value.decode("ascii", "replace"))


def _parse_ns(text: str) -> int | None:
    """A PAX time as nanoseconds since the epoch; None when it is malformed.

    Digits beyond nanoseconds are dropped."""
    match = _PAX_TIME.fullmatch(text)
    if match is None:
        return None
    sign, seconds, fraction = match.groups()
    ns = int(seconds) * NS_PER_SECOND + int((fraction or "")[:9].ljust(9, "0"))
    return -ns if sign else ns


class MemberCheck:
    """Refuses members that could make a restore write outside its target.

    Remembers every name (to refuse duplicates, which could replace a file by
    a link) and every symbolic link (to refuse entries below one)."""

    def __init__(self) -> None:
        self.seen: set[tuple[bytes, ...]] = set()
        self._links: set[tuple[bytes, ...]] = set()

    def check(self, member: Member) -> tuple[bytes, ...]:
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


def _name_parts(member: Member) -> tuple[bytes, ...]:
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


def _check_type(member: Member) -> None:
    """Accept files, folders and symlinks only; raises ``IntegrityError``."""
    kind = member.kind
    if kind in REGULAR_TYPES or kind in (tarfile.DIRTYPE, tarfile.SYMTYPE):
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
