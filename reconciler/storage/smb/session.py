"""The SMB connection and session of one storage.

Every ``SmbSession`` keeps its own smbclient connection cache: it never serves
another storage with other credentials (smbclient's global pool matches
sessions by user name only, so a wrong password could silently reuse a good
session), and ``close()`` drops exactly its own connection.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import threading
import weakref
from typing import Any

import smbclient

from reconciler.errors import StorageError
from reconciler.storage.smb.errors import SmbErrors

DEFAULT_PORT = 445


def _quiet_sdk_loggers() -> None:
    """Silence smbprotocol's and smbclient's loggers.

    They log tracebacks (a dead receive thread, a connection that cannot be
    closed at exit) at WARNING and ERROR; with logging unconfigured Python
    prints those on stderr, where users must never see a traceback. Our own
    errors already say what went wrong."""
    for name in ("smbprotocol", "smbclient"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def forget_handle(raw: Any) -> None:
    """Close an SMB handle, or at least stop smbclient from retrying that.

    When the connection is gone the close fails and the server has dropped
    the handle anyway; smbclient would otherwise warn about an unclosed
    handle when the object is garbage collected."""
    try:
        raw.close()
    except Exception:
        with contextlib.suppress(AttributeError):
            raw.fd._connected = False


_OPEN_SESSIONS: weakref.WeakSet[SmbSession] = weakref.WeakSet()


@atexit.register
def _close_all_at_exit() -> None:
    """Close every open SmbSession's connection before the interpreter exits.

    Registered after smbclient's own hook, so it runs first (atexit is LIFO)."""
    for session in list(_OPEN_SESSIONS):
        session.close()


class SmbSession:
    """Logon, encryption choice and the connection cache of one storage.

    ``description`` names the storage in the message refusing a server that
    cannot encrypt although ``require_encryption`` asks for it; without it,
    encryption is still used whenever the server supports it."""

    def __init__(
        self,
        errors: SmbErrors,
        *,
        username: str | None,
        password: str | None,
        require_encryption: bool,
        description: str,
    ) -> None:
        self._errors = errors
        self._server = errors.server
        self._username = username
        self._password = password
        self._require_encryption = require_encryption
        self._description = description
        self.cache: dict[str, Any] = {}
        # None until the first logon showed whether the server can encrypt.
        self._encrypt: bool | None = None
        self._lock = threading.Lock()
        _quiet_sdk_loggers()
        _OPEN_SESSIONS.add(self)

    def kwargs(self) -> dict[str, Any]:
        """Session arguments for every smbclient call.

        Credentials go with every call so that smbclient can log on again by
        itself when it finds the cached connection closed."""
        return {
            "username": self._username,
            "password": self._password,
            "port": self._errors.port,
            # True forces encryption; None lets the server decide, which is
            # all that is left once the server turned out unable to encrypt.
            "encrypt": self._encrypt or None,
            "connection_timeout": self._errors.timeout,
            "connection_cache": self.cache,
        }

    def logon(self) -> None:
        """Connect and log on unless this session is alive.

        Raises AuthenticationError, UnreachableError or StorageError (the
        server cannot encrypt although require_encryption asks for it)."""
        with self._lock:
            try:
                session = smbclient.register_session(self._server, **self.kwargs())
                if self._encrypt is None:
                    self._choose_encryption(session)
            except StorageError:
                raise
            except Exception as exc:
                self.close()
                raise self._errors.logon_error(exc) from exc

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
                    f"which {self._description} requires"
                )
            self._encrypt = False
            return
        self._encrypt = True
        if not session.encrypt_data:
            self.close()
            smbclient.register_session(self._server, **self.kwargs())

    def close(self) -> None:
        """Log off and close this session's connection; never raises.

        The session stays usable: the next logon connects again."""
        with contextlib.suppress(Exception):
            smbclient.reset_connection_cache(fail_on_error=False, connection_cache=self.cache)
        self.cache.clear()
