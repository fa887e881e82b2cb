"""Translating smbprotocol exceptions (NT statuses) into ``reconciler.errors``.

Each message is one sentence; no SDK text, traceback or password reaches a
user. The status sets also tell the storage which failures are worth a retry.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

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

# NT status codes (MS-ERREF) this backend tells apart.
AUTH_FAILED = frozenset(
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
NO_SHARE = frozenset(
    {
        NtStatus.STATUS_BAD_NETWORK_NAME,
        # smbclient follows a failed tree connect with a DFS referral request;
        # a server without that DFS root then answers STATUS_NOT_FOUND.
        NtStatus.STATUS_NOT_FOUND,
    }
)
DENIED = frozenset(
    {
        NtStatus.STATUS_ACCESS_DENIED,
        0xC00000A2,  # STATUS_MEDIA_WRITE_PROTECTED (read-only share on Windows)
        NtStatus.STATUS_PRIVILEGE_NOT_HELD,
        0xC00000CA,  # STATUS_NETWORK_ACCESS_DENIED
    }
)
FULL = frozenset({NtStatus.STATUS_DISK_FULL, 0xC0000044})  # + STATUS_QUOTA_EXCEEDED
MISSING = frozenset(
    {
        NtStatus.STATUS_OBJECT_NAME_NOT_FOUND,
        NtStatus.STATUS_OBJECT_PATH_NOT_FOUND,
        NtStatus.STATUS_NO_SUCH_FILE,
    }
)
NOT_A_FOLDER = frozenset({NtStatus.STATUS_NOT_A_DIRECTORY, NtStatus.STATUS_FILE_IS_A_DIRECTORY})
SESSION_LOST = frozenset(
    {
        NtStatus.STATUS_USER_SESSION_DELETED,
        NtStatus.STATUS_NETWORK_NAME_DELETED,
        0xC000035C,  # STATUS_NETWORK_SESSION_EXPIRED
    }
)
BUSY = frozenset({NtStatus.STATUS_SHARING_VIOLATION, NtStatus.STATUS_DELETE_PENDING})
# Renaming over a file another client has open is refused with ACCESS_DENIED
# (Windows semantics, Samba too), so a replace retries it like a busy file.
RENAME_BUSY = BUSY | {NtStatus.STATUS_ACCESS_DENIED}


def nt_status(exc: BaseException) -> int | None:
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


def connection_lost(exc: BaseException) -> bool:
    """True when ``exc`` means the TCP connection or SMB session is gone.

    Everything that is not an answer of the server about a file is such a
    loss: a closed socket, a failed reconnect, a dead receive thread."""
    status = nt_status(exc)
    if status is not None:
        return status in SESSION_LOST
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


@dataclass(frozen=True)
class SmbErrors:
    """The error translation of one storage: who connects to which share.

    ``user`` is the user name as messages show it."""

    server: str
    port: int
    share: str
    user: str
    timeout: float

    def logon_error(self, exc: BaseException) -> StorageError:
        """Translate a failed connect or logon."""
        status = nt_status(exc)
        if isinstance(exc, SMBAuthenticationError) or status in AUTH_FAILED:
            return AuthenticationError(
                f"the SMB server at {self.server} rejected the credentials for {self.user}"
            )
        if status is not None:
            return UnreachableError(
                f"cannot reach the SMB server at {self.server}:{self.port}: "
                f"it refused the connection with {_status_name(status)}"
            )
        return UnreachableError(
            f"cannot reach the SMB server at {self.server}:{self.port}: "
            f"{_socket_reason(exc, self.timeout)}"
        )

    def operation_error(
        self, exc: BaseException, action: str, target: str, *, writing: bool
    ) -> StorageError:
        """Translate an SDK exception raised by an operation on ``target``.

        ``action`` is a verb phrase ('read', 'list') for messages, ``target``
        the path as messages show it; ``writing`` picks 'not writable' over
        'not readable' for a denied access."""
        status = nt_status(exc)
        if isinstance(exc, SMBAuthenticationError) or status in AUTH_FAILED:
            return self.logon_error(exc)
        if status is None or status in SESSION_LOST:
            # Not an answer about a file: the connection itself failed.
            return UnreachableError(f"the SMB server at {self.server} became unreachable")
        if status in NO_SHARE:
            return UnreachableError(
                f"the SMB server at {self.server} has no share named {self.share}"
            )
        if status in DENIED:
            verb = "writable" if writing else "readable"
            return PermissionDeniedError(f"{target} is not {verb} by {self.user}")
        if status in FULL:
            return StorageFullError(f"cannot {action} {target}: the SMB share is full")
        if status in MISSING:
            return ObjectNotFoundError(f"cannot {action} {target}: it does not exist")
        if status == NtStatus.STATUS_OBJECT_NAME_COLLISION:
            return ObjectExistsError(f"{target} already exists")
        if status in NOT_A_FOLDER:
            return UnreachableError(f"cannot {action} {target}: a path component is not a folder")
        if status in BUSY:
            return StorageError(f"cannot {action} {target}: another client has it open")
        return StorageError(
            f"cannot {action} {target}: the SMB server answered {_status_name(status)}"
        )
