"""SMB storage: a repository folder on an SMB 2/3 share, via smbprotocol's smbclient.

Every ``SmbStorage`` keeps its own smbclient connection cache: its session
never serves another storage with other credentials (smbclient's global pool
matches sessions by user name only, so a wrong password could silently reuse
a good session), and ``close()`` drops exactly its own connection.

SDK exceptions are translated here into ``reconciler.errors`` types whose
message is one sentence; no SDK text, traceback or password reaches a user.
Facts about the SDK this relies on are in /work/shared/SDK-NOTES.md.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import socket
import stat
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO, TypeVar

import smbclient
from smbprotocol.exceptions import (
    SMBAuthenticationError,
    SMBOSError,
    SMBResponseException,
)
from smbprotocol.header import NtStatus

from reconciler.errors import (
    AuthenticationError,
    ObjectExistsError,
    ObjectNotFoundError,
    PermissionDeniedError,
    StorageError,
    StorageFullError,
    UnreachableError,
)
from reconciler.storage.base import CHUNK_SIZE, Entry
from reconciler.storage.keys import check_key, temp_name_for
from reconciler.storage.plumbing import (
    ChunkingWriter,
    buffered_reader,
    remove_tree,
    staged,
    write_whole,
)
from reconciler.streams import ByteSink

T = TypeVar("T")

DEFAULT_PORT = 445

_LOST_ATTEMPTS = 3
"""Tries of an idempotent operation whose connection was lost (1 + 2 retries)."""
_LOST_BACKOFF = 0.2
_BUSY_ATTEMPTS = 6
"""Tries of an operation refused because another client holds the file open."""
_BUSY_BACKOFF = 0.05

# NT status codes (MS-ERREF) this backend tells apart.
_AUTH_FAILED = frozenset(
    {
        0xC000006D,  # STATUS_LOGON_FAILURE
        0xC000006A,  # STATUS_WRONG_PASSWORD
        0xC0000064,  # STATUS_NO_SUCH_USER
        0xC0000071,  # STATUS_PASSWORD_EXPIRED
        0xC0000224,  # STATUS_PASSWORD_MUST_CHANGE
        0xC0000072,  # STATUS_ACCOUNT_DISABLED
        0xC0000234,  # STATUS_ACCOUNT_LOCKED_OUT
        0xC000006E,  # STATUS_ACCOUNT_RESTRICTION
        0xC0000193,  # STATUS_ACCOUNT_EXPIRED
    }
)
_NO_SHARE = frozenset(
    {
        NtStatus.STATUS_BAD_NETWORK_NAME,
        # smbclient follows a failed tree connect with a DFS referral request;
        # a server without that DFS root then answers STATUS_NOT_FOUND.
        NtStatus.STATUS_NOT_FOUND,
    }
)
_DENIED = frozenset(
    {
        NtStatus.STATUS_ACCESS_DENIED,
        0xC00000A2,  # STATUS_MEDIA_WRITE_PROTECTED (read-only share on Windows)
        NtStatus.STATUS_PRIVILEGE_NOT_HELD,
        0xC00000CA,  # STATUS_NETWORK_ACCESS_DENIED
    }
)
_FULL = frozenset({NtStatus.STATUS_DISK_FULL, 0xC0000044})  # + STATUS_QUOTA_EXCEEDED
_MISSING = frozenset(
    {
        NtStatus.STATUS_OBJECT_NAME_NOT_FOUND,
        NtStatus.STATUS_OBJECT_PATH_NOT_FOUND,
        NtStatus.STATUS_NO_SUCH_FILE,
    }
)
_NOT_A_FOLDER = frozenset({NtStatus.STATUS_NOT_A_DIRECTORY, NtStatus.STATUS_FILE_IS_A_DIRECTORY})
_SESSION_LOST = frozenset(
    {
        NtStatus.STATUS_USER_SESSION_DELETED,
        NtStatus.STATUS_NETWORK_NAME_DELETED,
        0xC000035C,  # STATUS_NETWORK_SESSION_EXPIRED
    }
)
_BUSY = frozenset({NtStatus.STATUS_SHARING_VIOLATION, NtStatus.STATUS_DELETE_PENDING})
# Renaming over a file another client has open is refused with ACCESS_DENIED
# (Windows semantics, Samba too), so a replace retries it like a busy file.
_RENAME_BUSY = _BUSY | {NtStatus.STATUS_ACCESS_DENIED}


def parse_smb_path(path: str) -> tuple[str, str, str]:
    """Split ``//server/share/dir/sub`` or ``\\\\server\\share\\dir\\sub``.

    Returns (server, share, folder) where folder is '/'-separated, possibly
    empty. Raises ValueError naming the path when it is not of that form."""
    if not (path.startswith("//") or path.startswith("\\\\")):
        raise ValueError(
            f"the SMB path {path!r} must start with // or \\\\ (for example //server/share/folder)"
        )
    parts = path[2:].replace("\\", "/").rstrip("/").split("/")
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise ValueError(f"the SMB path {path!r} must name a server and a share: //server/share")
    if any(p in ("", ".", "..") for p in parts[2:]):
        raise ValueError(f"the SMB path {path!r} has an empty, '.' or '..' folder name")
    return parts[0], parts[1], "/".join(parts[2:])


def _split_folder(folder: str) -> list[str]:
    """The parts of a '/'- or '\\'-separated folder inside a share.

    Raises ValueError for '.' or '..' parts, which could leave the folder."""
    parts = [p for p in folder.replace("\\", "/").split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise ValueError(f"the SMB folder {folder!r} must not contain '.' or '..'")
    return parts


def _nt_status(exc: BaseException) -> int | None:
    """The NT status carried by an smbprotocol exception, else None."""
    if isinstance(exc, SMBOSError):
        status: int = exc.ntstatus
        return status
    if isinstance(exc, SMBResponseException):
        code: int = exc.status
        return code
    return None


def _status_name(status: int) -> str:
    """'STATUS_X (0xC0000043)' for an NT status, for messages."""
    for name, value in vars(NtStatus).items():
        if name.startswith("STATUS_") and value == status:
            return f"{name} (0x{status:08X})"
    return f"0x{status:08X}"


def _connection_lost(exc: BaseException) -> bool:
    """True when ``exc`` means the TCP connection or SMB session is gone.

    Everything that is not an answer of the server about a file is such a
    loss: a closed socket, a failed reconnect, a dead receive thread."""
    status = _nt_status(exc)
    if status is not None:
        return status in _SESSION_LOST
    return not isinstance(exc, SMBAuthenticationError)


def _socket_reason(exc: BaseException, timeout: float) -> str:
    """A short human reason for a failed TCP connect or SMB negotiation."""
    cause = exc.__cause__ if isinstance(exc, ValueError) else exc
    if isinstance(cause, socket.gaierror):
        return "the host name cannot be resolved"
    if isinstance(cause, ConnectionRefusedError):
        return "connection refused"
    if isinstance(cause, TimeoutError) or "timeout" in str(exc).lower():
        return f"no answer within {timeout:g} s"
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror.lower()
    if "encryption" in str(exc).lower():
        # Samba with "server smb encrypt = desired" flags even an SMB 2.x
        # session for encryption, which that dialect cannot do.
        return "the server asks for SMB encryption on a connection that cannot encrypt"
    return "the SMB handshake failed"


def _quiet_sdk_loggers() -> None:
    """Silence smbprotocol's and smbclient's loggers.

    They log tracebacks (a dead receive thread, a connection that cannot be
    closed at exit) at WARNING and ERROR; with logging unconfigured Python
    prints those on stderr, where users must never see a traceback. Our own
    errors already say what went wrong."""
    for name in ("smbprotocol", "smbclient"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def _forget_handle(raw: Any) -> None:
    """Close an SMB handle, or at least stop smbclient from retrying that.

    When the connection is gone the close fails and the server has dropped
    the handle anyway; smbclient would otherwise warn about an unclosed
    handle when the object is garbage collected."""
    try:
        raw.close()
    except Exception:
        with contextlib.suppress(AttributeError):
            raw.fd._connected = False


_OPEN_STORAGES: weakref.WeakSet[SmbStorage] = weakref.WeakSet()


@atexit.register
def _close_all_at_exit() -> None:
    """Close every open SmbStorage's connection before the interpreter exits.

    Registered after smbclient's own hook, so it runs first (atexit is LIFO)."""
    for storage in list(_OPEN_STORAGES):
        storage.close()


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
        self._folder = _split_folder(folder)
        self._port = port
        self._username = username
        self._password = password
        self._require_encryption = require_encryption
        self._timeout = connection_timeout
        self._sleep = sleep
        self._cache: dict[str, Any] = {}
        # None until the first logon showed whether the server can encrypt.
        self._encrypt: bool | None = None
        self._lock = threading.Lock()
        _quiet_sdk_loggers()
        _OPEN_STORAGES.add(self)

    # -- naming ---------------------------------------------------------------

    @property
    def description(self) -> str:
        """'SMB share //server/share/folder (port N)'; never a credential."""
        port = "" if self._port == DEFAULT_PORT else f" (port {self._port})"
        return f"SMB share {self._display([])}{port}"

    @property
    def _user(self) -> str:
        return self._username or "the current Kerberos user"

    def _display(self, parts: list[str]) -> str:
        """'//server/share/folder/key' for messages."""
        return "/".join(["/", self._server, self._share, *self._folder, *parts])

    def _unc(self, parts: list[str]) -> str:
        r"""'\\server\share\folder\key' for smbclient."""
        return "\\".join(["\\", self._server, self._share, *self._folder, *parts])

    def _kwargs(self) -> dict[str, Any]:
        """Session arguments for every smbclient call.

        Credentials go with every call so that smbclient can log on again by
        itself when it finds the cached connection closed."""
        return {
            "username": self._username,
            "password": self._password,
            "port": self._port,
            # True forces encryption; None lets the server decide, which is
            # all that is left once the server turned out unable to encrypt.
            "encrypt": self._encrypt or None,
            "connection_timeout": self._timeout,
            "connection_cache": self._cache,
        }

    # -- connection -------------------------------------------------------------

    def _logon(self) -> None:
        """Connect and log on unless this storage's session is alive.

        Raises AuthenticationError, UnreachableError or StorageError (the
        server cannot encrypt although require_encryption asks for it)."""
        with self._lock:
            try:
                session = smbclient.register_session(self._server, **self._kwargs())
                if self._encrypt is None:
                    self._choose_encryption(session)
            except StorageError:
                raise
            except Exception as exc:
                self.close()
                raise self._logon_error(exc) from exc

    def _choose_encryption(self, session: Any) -> None:
        """Turn on SMB 3 encryption when the server supports it.

        smbclient encrypts only when the server demands it or when asked
        before the logon, so a session the server left unencrypted is
        replaced by an encrypted one. Raises StorageError when
        require_encryption cannot be honoured."""
        if not session.connection.supports_encryption:
            if self._require_encryption:
                self.close()
                raise StorageError(
                    f"the SMB server at {self._server} does not support SMB 3 encryption, "
                    f"which {self.description} requires"
                )
            self._encrypt = False
            return
        self._encrypt = True
        if not session.encrypt_data:
            self.close()
            smbclient.register_session(self._server, **self._kwargs())

    def _logon_error(self, exc: BaseException) -> StorageError:
        """Translate a failed connect or logon."""
        status = _nt_status(exc)
        if isinstance(exc, SMBAuthenticationError) or status in _AUTH_FAILED:
            return AuthenticationError(
                f"the SMB server at {self._server} rejected the credentials for {self._user}"
            )
        if status is not None:
            return UnreachableError(
                f"cannot reach the SMB server at {self._server}:{self._port}: "
                f"it refused the connection with {_status_name(status)}"
            )
        return UnreachableError(
            f"cannot reach the SMB server at {self._server}:{self._port}: "
            f"{_socket_reason(exc, self._timeout)}"
        )

    def close(self) -> None:
        """Log off and close this storage's connection; never raises.

        The storage stays usable: the next operation connects again."""
        with contextlib.suppress(Exception):
            smbclient.reset_connection_cache(fail_on_error=False, connection_cache=self._cache)
        self._cache.clear()

    # -- calling the SDK ----------------------------------------------------

    def _call(
        self,
        fn: Callable[[], T],
        action: str,
        parts: list[str],
        *,
        writing: bool = False,
        idempotent: bool = True,
        busy: frozenset[int] = _BUSY,
    ) -> T:
        """Run ``fn`` (SDK calls) with logon, retries and error translation.

        A lost connection is retried, with a new logon, only when the
        operation is idempotent; a file another client holds open (``busy``
        statuses) is retried a few times. Returns what ``fn`` returns.
        Raises the StorageError subclass that ``_error`` picks."""
        lost_tries = busy_tries = 0
        while True:
            self._logon()
            try:
                return fn()
            except Exception as exc:
                status = _nt_status(exc)
                if status in busy and busy_tries + 1 < _BUSY_ATTEMPTS:
                    self._sleep(_BUSY_BACKOFF * 2**busy_tries)
                    busy_tries += 1
                elif idempotent and _connection_lost(exc) and lost_tries + 1 < _LOST_ATTEMPTS:
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

        ``action`` is a verb phrase ('read', 'list') for messages; ``writing``
        picks 'not writable' over 'not readable' for a denied access."""
        status = _nt_status(exc)
        target = self._display(parts)
        if isinstance(exc, SMBAuthenticationError) or status in _AUTH_FAILED:
            return self._logon_error(exc)
        if status is None or status in _SESSION_LOST:
            # Not an answer about a file: the connection itself failed.
            self.close()
            return UnreachableError(f"the SMB server at {self._server} became unreachable")
        if status in _NO_SHARE:
            return UnreachableError(
                f"the SMB server at {self._server} has no share named {self._share}"
            )
        if status in _DENIED:
            verb = "writable" if writing else "readable"
            return PermissionDeniedError(f"{target} is not {verb} by {self._user}")
        if status in _FULL:
            return StorageFullError(f"cannot {action} {target}: the SMB share is full")
        if status in _MISSING:
            return ObjectNotFoundError(f"cannot {action} {target}: it does not exist")
        if status == NtStatus.STATUS_OBJECT_NAME_COLLISION:
            return ObjectExistsError(f"{target} already exists")
        if status in _NOT_A_FOLDER:
            return UnreachableError(f"cannot {action} {target}: a path component is not a folder")
        if status in _BUSY:
            return StorageError(f"cannot {action} {target}: another client has it open")
        return StorageError(
            f"cannot {action} {target}: the SMB server answered {_status_name(status)}"
        )

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
            if exc.ntstatus not in _MISSING:
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
        with buffered_reader(fill, lambda: _forget_handle(raw)) as stream:
            yield stream

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
                busy=_RENAME_BUSY,
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
            _forget_handle(raw)
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
        if exc.ntstatus not in _MISSING:
            raise
