"""The Storage implementation on an SMB share: the operations, their retries
and the folder handling.

The connection lives in ``session``, the translation of SDK exceptions into
``reconciler.errors`` in ``errors``. Facts about the SDK this relies on are in
/work/shared/SDK-NOTES.md.
"""

from __future__ import annotations

import contextlib
import io
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO, TypeVar

import smbclient
from smbprotocol.exceptions import SMBOSError
from smbprotocol.header import NtStatus

from reconciler.errors import ObjectNotFoundError, StorageError, UnreachableError
from reconciler.storage.base import Entry
from reconciler.storage.keys import check_key, temp_name_for
from reconciler.storage.plumbing import (
    ChunkingWriter,
    buffered_reader,
    check_range,
    remove_tree,
    shorter_than_asked,
    staged,
    write_whole,
)
from reconciler.storage.smb.errors import (
    BUSY,
    MISSING,
    RENAME_BUSY,
    SmbErrors,
    connection_lost,
    nt_status,
)
from reconciler.storage.smb.paths import split_folder
from reconciler.storage.smb.session import DEFAULT_PORT, SmbSession, forget_handle
from reconciler.streams import CHUNK_SIZE, ByteSink

T = TypeVar("T")

_LOST_ATTEMPTS = 3
"""Tries of an idempotent operation whose connection was lost (1 + 2 retries)."""
_LOST_BACKOFF = 0.2
_BUSY_ATTEMPTS = 6
"""Tries of an operation refused because another client holds the file open."""
_BUSY_BACKOFF = 0.05


class SmbStorage:
    """A repository folder ``\\\\server\\share\\folder`` on an SMB share.

    ``require_encryption`` refuses servers without SMB 3 encryption; without
    it, encryption is still used whenever the server supports it. ``sleep``
    waits between retries (tests pass a recording one)."""

    def __init__(
        self,
        server: str,
        share: str,
        folder: str,
        *,
        port: int = DEFAULT_PORT,
        username: str | None,
        password: str | None,
        require_encryption: bool = False,
        connection_timeout: float = 15.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not server or not share or "/" in share or "\\" in share:
            raise ValueError(f"invalid SMB server {server!r} or share {share!r}")
        self._server = server
        self._share = share
        self._folder = split_folder(folder)
        self._port = port
        self._sleep = sleep
        self._errors = SmbErrors(
            server, port, share, username or "the current Kerberos user", connection_timeout
        )
        self._session = SmbSession(
            self._errors,
            username=username,
            password=password,
            require_encryption=require_encryption,
            description=self.description,
        )

    # -- naming ---------------------------------------------------------------

    @property
    def description(self) -> str:
        """'SMB share //server/share/folder (port N)'; never a credential."""
        port = "" if self._port == DEFAULT_PORT else f" (port {self._port})"
        return f"SMB share {self._display([])}{port}"

    def _display(self, parts: list[str]) -> str:
        """'//server/share/folder/key' for messages."""
        return "/".join(["/", self._server, self._share, *self._folder, *parts])

    def _unc(self, parts: list[str]) -> str:
        r"""'\\server\share\folder\key' for smbclient."""
        return "\\".join(["\\", self._server, self._share, *self._folder, *parts])

    def _kwargs(self) -> dict[str, Any]:
        """Session arguments for every smbclient call (see ``SmbSession.kwargs``)."""
        return self._session.kwargs()

    def close(self) -> None:
        """Log off and close this storage's connection; never raises.

        The storage stays usable: the next operation connects again."""
        self._session.close()

    # -- calling the SDK ----------------------------------------------------

    def _call(
        self,
        fn: Callable[[], T],
        action: str,
        parts: list[str],
        *,
        writing: bool = False,
        idempotent: bool = True,
        busy: frozenset[int] = BUSY,
    ) -> T:
        """Run ``fn`` (SDK calls) with logon, retries and error translation.

        A lost connection is retried, with a new logon, only when the
        operation is idempotent; a file another client holds open (``busy``
        statuses) is retried a few times. Returns what ``fn`` returns.
        Raises the StorageError subclass that ``_error`` picks."""
        lost_tries = busy_tries = 0
        while True:
            self._session.logon()
            try:
                return fn()
            except Exception as exc:
                status = nt_status(exc)
                if status in busy and busy_tries + 1 < _BUSY_ATTEMPTS:
                    self._sleep(_BUSY_BACKOFF * 2**busy_tries)
                    busy_tries += 1
                elif idempotent and connection_lost(exc) and lost_tries + 1 < _LOST_ATTEMPTS:
                    self.close()
                    self._sleep(_LOST_BACKOFF * 2**lost_tries)
                    lost_tries += 1
                else:
                    raise self._error(exc, action, parts, writing=writing) from exc

    def _guard(self, fn: Callable[[], T], action: str, parts: list[str]) -> T:
        """Run ``fn`` on an already open handle, translating its errors.

        No logon and no retry: the handle belongs to the current connection.
        Returns what ``fn`` returns; raises StorageError subclasses."""
        try:
            return fn()
        except Exception as exc:
            raise self._error(exc, action, parts, writing=True) from exc

    def _error(
        self, exc: BaseException, action: str, parts: list[str], *, writing: bool
    ) -> StorageError:
        """Translate an SDK exception raised by an operation on ``parts``.

        A failed connection (not an answer about a file) is closed first, so
        the next operation connects again."""
        if connection_lost(exc):
            self.close()
        return self._errors.operation_error(exc, action, self._display(parts), writing=writing)

    # -- folders --------------------------------------------------------------

    def _make_folders(self, parts: list[str]) -> None:
        """Create the folder ``parts`` (relative to the share) and its parents.

        Tries the folder itself first: in the usual case its parent exists
        and one request suffices. Raises SDK exceptions."""
        if not parts:
            return
        kwargs = self._kwargs()
        share_root = "\\".join(["\\", self._server, self._share])
        try:
            smbclient.mkdir("\\".join([share_root, *parts]), **kwargs)
            return
        except SMBOSError as exc:
            if exc.ntstatus == NtStatus.STATUS_OBJECT_NAME_COLLISION:
                return
            if exc.ntstatus not in MISSING:
                raise
        for depth in range(1, len(parts) + 1):
            try:
                smbclient.mkdir("\\".join([share_root, *parts[:depth]]), **kwargs)
            except SMBOSError as exc:
                if exc.ntstatus != NtStatus.STATUS_OBJECT_NAME_COLLISION:
                    raise

    def ensure_root(self) -> None:
        """Create the repository folder and its parents if missing.

        Raises PermissionDeniedError on a read-only share, UnreachableError,
        AuthenticationError or another StorageError."""
        self._call(lambda: self._make_folders(self._folder), "create", [], writing=True)
        # An empty folder is the share root: check that it can be reached.
        if not self._folder:
            self._call(lambda: smbclient.stat(self._unc([]), **self._kwargs()), "open", [])

    def root_exists(self) -> bool:
        """True when the repository folder exists. Raises StorageError otherwise."""
        try:
            result = self._call(lambda: smbclient.stat(self._unc([]), **self._kwargs()), "open", [])
        except ObjectNotFoundError:
            return False
        return stat.S_ISDIR(result.st_mode)

    # -- reading ----------------------------------------------------------------

    def read(self, key: str) -> bytes:
        """The whole content of a small object. Raises ObjectNotFoundError."""
        parts = check_key(key)

        def read_all() -> bytes:
            with smbclient.open_file(
                self._unc(parts), "rb", share_access="rwd", **self._kwargs()
            ) as stream:
                data: bytes = stream.read()
                return data

        return self._call(read_all, "read", parts)

    @contextmanager
    def open_read(self, key: str) -> Iterator[BinaryIO]:
        """A streaming reader over 1 MiB reads. Raises ObjectNotFoundError.

        Errors while reading are StorageError subclasses too."""
        parts = check_key(key)
        raw = self._call(
            lambda: smbclient.open_file(
                self._unc(parts), "rb", buffering=0, share_access="rwd", **self._kwargs()
            ),
            "read",
            parts,
        )

        def fill(view: memoryview) -> int:
            # At most one chunk per request, whatever the caller asks for.
            try:
                count: int = raw.readinto(view[:CHUNK_SIZE])
            except Exception as exc:
                raise self._error(exc, "read", parts, writing=False) from exc
            return count

        # A failure to close a read handle loses nothing.
        with buffered_reader(fill, lambda: forget_handle(raw)) as stream:
            yield stream

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        """``length`` bytes from ``offset``: open, read in as many requests as
        the server's read size and credits allow, close. Retried as a whole on
        a lost connection. Raises ObjectNotFoundError, IntegrityError when the
        object ends before the range does."""
        parts = check_key(key)
        check_range(offset, length)

        def read_piece() -> tuple[bytes | None, int]:
            """The bytes asked for (None when the object is shorter) and its size."""
            with smbclient.open_file(
                self._unc(parts), "rb", buffering=0, share_access="rwd", **self._kwargs()
            ) as raw:
                # The size came with the open's response: no request.
                size: int = raw.seek(0, io.SEEK_END)
                if offset + length > size:
                    return None, size
                raw.seek(offset)
                buffer = bytearray(length)
                view = memoryview(buffer)
                got = 0
                while got < length:
                    count: int = raw.readinto(view[got:])
                    if not count:  # shortened since it was opened
                        return None, offset + got
                    got += count
                return bytes(buffer), size

        data, size = self._call(read_piece, "read", parts)
        if data is None:
            raise shorter_than_asked(self._display(parts), offset, length, size)
        return data

    def size(self, key: str) -> int:
        """Size in bytes. Raises ObjectNotFoundError."""
        parts = check_key(key)
        result = self._call(
            lambda: smbclient.stat(self._unc(parts), **self._kwargs()), "read", parts
        )
        size: int = result.st_size
        return size

    def exists(self, key: str) -> bool:
        """True when an object or folder has that key. Raises StorageError."""
        parts = check_key(key)
        try:
            self._call(lambda: smbclient.stat(self._unc(parts), **self._kwargs()), "read", parts)
        except ObjectNotFoundError:
            return False
        return True

    def list_dir(self, key: str) -> list[Entry]:
        """Names directly inside a folder, sorted; a missing folder gives [].

        Raises StorageError subclasses for other failures."""
        parts = check_key(key)

        def scan() -> list[Entry]:
            found = []
            with smbclient.scandir(self._unc(parts), **self._kwargs()) as entries:
                for entry in entries:
                    is_dir = bool(entry.is_dir(follow_symlinks=False))
                    # The size comes with the listing: entry.stat() would cost
                    # one more request per entry.
                    size = 0 if is_dir else int(entry.smb_info.end_of_file)
                    found.append(Entry(entry.name, is_dir, size))
            return found

        try:
            found = self._call(scan, "list", parts)
        except ObjectNotFoundError:
            return []
        return sorted(found, key=lambda e: e.name)

    # -- writing ----------------------------------------------------------------

    def write_atomic(self, key: str, data: bytes) -> None:
        """Write a small object, replacing any previous one atomically.

        Raises PermissionDeniedError, StorageFullError, UnreachableError..."""
        write_whole(self, key, data)

    @contextmanager
    def open_write(self, key: str) -> Iterator[ByteSink]:
        """A streaming writer that commits atomically when the block exits.

        Data goes to a temporary name, sent in 1 MiB pieces, and is renamed
        over the final key at the end. On an exception in the block the
        temporary object is removed (unless the connection is lost: then it
        stays, marked by TEMP_MARKER, for staging cleanup) and the final key
        is untouched. Raises StorageError subclasses."""
        parts = check_key(key)
        temp = [*parts[:-1], temp_name_for(parts[-1])]
        self._call(
            lambda: self._make_folders([*self._folder, *parts[:-1]]), "write", parts, writing=True
        )
        raw = self._call(
            lambda: smbclient.open_file(self._unc(temp), "xb", buffering=0, **self._kwargs()),
            "write",
            parts,
            writing=True,
            idempotent=False,
        )
        writer = self._writer(raw, parts)

        def commit() -> None:
            writer.flush()
            self._guard(raw.close, "write", parts)
            self._call(
                lambda: smbclient.replace(self._unc(temp), self._unc(parts), **self._kwargs()),
                "write",
                parts,
                writing=True,
                idempotent=False,
                busy=RENAME_BUSY,
            )

        with staged(writer, commit, self._discarder(raw, temp)) as out:
            yield out

    def create_exclusive(self, key: str, data: bytes) -> None:
        """Create a small object; raises ObjectExistsError if the key exists.

        The server decides atomically (create disposition FILE_CREATE)."""
        parts = check_key(key)
        self._call(
            lambda: self._make_folders([*self._folder, *parts[:-1]]), "create", parts, writing=True
        )
        # No sharing while writing: a reader never sees the object half written.
        raw = self._call(
            lambda: smbclient.open_file(self._unc(parts), "xb", buffering=0, **self._kwargs()),
            "create",
            parts,
            writing=True,
            idempotent=False,
        )
        writer = self._writer(raw, parts)

        def commit() -> None:
            writer.flush()
            self._guard(raw.close, "write", parts)

        with staged(writer, commit, self._discarder(raw, parts)) as out:
            out.write(data)

    def _writer(self, raw: Any, parts: list[str]) -> ChunkingWriter:
        """Sends what is written to the open file ``raw`` one CHUNK_SIZE request at
        a time. Raises StorageError subclasses."""

        def send(piece: memoryview) -> None:
            # The SDK may take less than a whole piece per request (credits).
            try:
                while piece:
                    piece = piece[raw.write(piece) :]
            except Exception as exc:
                raise self._error(exc, "write", parts, writing=True) from exc

        return ChunkingWriter(send, CHUNK_SIZE)

    def _discarder(self, raw: Any, parts: list[str]) -> Callable[[BaseException], None]:
        """What undoes a failed write to ``parts`` through the handle ``raw``.

        When the connection is lost the object stays, marked by TEMP_MARKER
        (or as a lock nobody finished writing), for staging cleanup."""

        def discard(exc: BaseException) -> None:
            forget_handle(raw)
            if not isinstance(exc, UnreachableError):
                self._remove_quietly(parts)

        return discard

    # -- deleting ---------------------------------------------------------------

    def delete(self, key: str) -> None:
        """Delete one object; a missing object is not an error.

        Raises PermissionDeniedError, UnreachableError..."""
        parts = check_key(key)
        with contextlib.suppress(ObjectNotFoundError):
            self._call(
                lambda: smbclient.remove(self._unc(parts), **self._kwargs()),
                "delete",
                parts,
                writing=True,
            )

    def delete_tree(self, key: str) -> None:
        """Delete a folder and everything in it; a missing folder is not an error.

        Raises PermissionDeniedError, UnreachableError..."""
        parts = check_key(key)
        with contextlib.suppress(ObjectNotFoundError):
            self._call(lambda: self._remove_tree(self._unc(parts)), "delete", parts, writing=True)

    def _remove_tree(self, path: str) -> None:
        """Remove the folder ``path`` depth first. Raises SDK exceptions.

        Entries that vanish meanwhile (another client deleting) are skipped."""
        kwargs = self._kwargs()

        def children(folder: str) -> list[tuple[str, bool]]:
            with _unless_missing(), smbclient.scandir(folder, **kwargs) as entries:
                return [(e.path, e.is_dir(follow_symlinks=False)) for e in entries]
            return []

        def remove_file(file: str) -> None:
            with _unless_missing():
                smbclient.remove(file, **kwargs)

        def remove_folder(folder: str) -> None:
            with _unless_missing():
                smbclient.rmdir(folder, **kwargs)

        remove_tree(path, children, remove_file, remove_folder)

    def _remove_quietly(self, parts: list[str]) -> None:
        """Best-effort removal of a leftover object after a failed write."""
        with contextlib.suppress(Exception):
            smbclient.remove(self._unc(parts), **self._kwargs())


@contextmanager
def _unless_missing() -> Iterator[None]:
    """Ignore an SMB error saying that the file or folder does not exist."""
    try:
        yield
    except SMBOSError as exc:
        if exc.ntstatus not in MISSING:
            raise
