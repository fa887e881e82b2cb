"""The repository lock: one writer at a time, across processes and hosts.

The lock is ``lock.json``, created exclusively. It names its holder (host, pid,
a random nonce) and an expiry that a live holder renews. A lock whose expiry
passed, or whose holder is a process on this host that no longer exists, is
stale and may be taken over. Times here are always the real clock, never
``--now``.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType

from reconciler.errors import (
    IntegrityError,
    LockedError,
    ObjectExistsError,
    ObjectNotFoundError,
    StorageError,
)
from reconciler.repository.records import LOCK_KEY, dumps, loads
from reconciler.storage.base import Storage
from reconciler.timeutil import format_time, now_utc, parse_time

DEFAULT_TTL = timedelta(minutes=5)


@dataclass(frozen=True)
class LockHolder:
    host: str
    pid: int
    nonce: str
    command: str
    created_at: datetime
    expires_at: datetime

    def describe(self) -> str:
        return (
            f"{self.command} (pid {self.pid} on {self.host}, since {format_time(self.created_at)},"
            f" nonce {self.nonce})"
        )


def read_lock(storage: Storage) -> LockHolder | None:
    """The current holder, None when unlocked. A damaged lock reads as an expired one."""
    try:
        raw = storage.read(LOCK_KEY)
    except ObjectNotFoundError:
        return None
    try:
        data = loads(raw, LOCK_KEY)
        return LockHolder(
            host=str(data["host"]),
            pid=int(data["pid"]),
            nonce=str(data["nonce"]),
            command=str(data.get("command", "backupctl")),
            created_at=parse_time(data["createdAt"]),
            expires_at=parse_time(data["expiresAt"]),
        )
    except (IntegrityError, KeyError, TypeError, ValueError):
        epoch = parse_time("1970-01-01T00:00:00Z")
        return LockHolder("unknown", 0, "damaged", "unknown", epoch, epoch)


def stale_reason(holder: LockHolder, now: datetime, host: str | None = None) -> str | None:
    """Why ``holder`` no longer holds the lock, or None while it does."""
    if holder.expires_at <= now:
        return f"its lease expired at {format_time(holder.expires_at)}"
    if holder.host == (host or socket.gethostname()) and not _process_exists(holder.pid):
        return f"process {holder.pid} on {holder.host} no longer exists"
    return None


def _process_exists(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RepositoryLock:
    """Context manager holding the lock, renewing it in the background until released."""

    def __init__(
        self,
        storage: Storage,
        repository: str,
        command: str,
        ttl: timedelta = DEFAULT_TTL,
        clock: Callable[[], datetime] = now_utc,
    ) -> None:
        self._storage = storage
        self._repository = repository
        self._command = command
        self._ttl = ttl
        self._clock = clock
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        now = clock()
        self.holder = LockHolder(
            host=socket.gethostname(),
            pid=os.getpid(),
            nonce=secrets.token_hex(4),
            command=command,
            created_at=now,
            expires_at=now + ttl,
        )

    def _payload(self, holder: LockHolder) -> bytes:
        return dumps(
            {
                "host": holder.host,
                "pid": holder.pid,
                "nonce": holder.nonce,
                "command": holder.command,
                "createdAt": format_time(holder.created_at),
                "expiresAt": format_time(holder.expires_at),
            }
        )

    def acquire(self) -> None:
        """Take the lock, taking over a stale one. Raises LockedError naming the holder."""
        for _ in range(3):
            try:
                self._storage.create_exclusive(LOCK_KEY, self._payload(self.holder))
                break
            except ObjectExistsError:
                current = read_lock(self._storage)
                if current is None:
                    continue
                if stale_reason(current, self._clock()) is None:
                    raise LockedError(
                        f"the repository {self._repository} is locked by {current.describe()};"
                        " try again later, or run `backupctl unlock` if that process is gone"
                    ) from None
                self._storage.delete(LOCK_KEY)
        else:
            raise LockedError(f"could not take the lock of repository {self._repository}")
        self._renewer = threading.Thread(target=self._renew_loop, daemon=True, name="lock-renew")
        self._renewer.start()

    def _renew_loop(self) -> None:
        interval = self._ttl.total_seconds() / 3
        while not self._stop.wait(interval):
            renewed = LockHolder(
                **{**self.holder.__dict__, "expires_at": self._clock() + self._ttl}
            )
            try:
                current = read_lock(self._storage)
                if current is None or current.nonce != self.holder.nonce:
                    return  # broken by `unlock`: do not resurrect it
                self._storage.write_atomic(LOCK_KEY, self._payload(renewed))
                self.holder = renewed
            except StorageError:
                continue  # try again at the next interval; expiry gives slack

    def release(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
        try:
            current = read_lock(self._storage)
            if current is not None and current.nonce == self.holder.nonce:
                self._storage.delete(LOCK_KEY)
        except StorageError:
            pass  # the lock expires on its own

    def __enter__(self) -> RepositoryLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
