"""The repository lock: one writer at a time, across processes and hosts.

The lock is ``lock.json``, created exclusively. It names its holder (host, pid,
a random nonce) and an expiry that a live holder renews. A lock whose expiry
passed, or whose holder is a process on this host that no longer exists, is
stale and may be taken over. Times here are always the real clock, never
``--now``.

Taking over safely, with no compare-and-delete in the Storage protocol: two
processes that find the same stale lock must not both end up holding one, as
they would if each deleted "the stale lock" and the slower one deleted the
other's fresh lock instead. So the right to delete a stale lock instance is
itself taken exclusively: a taker first creates ``lock-claims/<nonce>.json``
for the stale lock's nonce, then reads ``lock.json`` again, deletes it only if
it still carries that nonce, creates its own lock exclusively, and removes its
claim. Only one process can hold the claim for a nonce, and nothing else
deletes a lock that is stale (a holder whose lease expired leaves its lock for
takeover instead of deleting it), so between the claimant's second read and
its delete the lock cannot change. A claim is a small lock of its own (holder,
one-minute expiry): one left by a taker that crashed is broken the same way,
through a claim on its nonce. What remains is what every lease has: a process
paused longer than a lease, or clocks that disagree by more than a third of
it. For that, the holder checks its lock at every renewal, and when it finds
the lock gone or someone else's it stops writing (``ensure_held`` raises).
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from types import TracebackType

from reconciler.errors import (
    IntegrityError,
    LockedError,
    ObjectExistsError,
    ObjectNotFoundError,
    StorageError,
)
from reconciler.failpoints import failpoint
from reconciler.repository.layout import LOCK_KEY
from reconciler.repository.records import dumps, loads
from reconciler.storage.base import Storage
from reconciler.timeutil import format_time, now_utc, parse_time

DEFAULT_TTL = timedelta(minutes=5)
CLAIMS_DIR = "lock-claims"
CLAIM_TTL = timedelta(minutes=1)
"""A takeover takes a few storage round trips; a claim older than this was left by a
taker that died, and may be broken."""

_ATTEMPTS = 5
_MAX_CLAIM_DEPTH = 3
_RENEW_RETRY_SECONDS = 5.0
_NONCE = re.compile(r"[0-9A-Za-z-]{1,64}")


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


def read_lock(storage: Storage, key: str = LOCK_KEY) -> LockHolder | None:
    """The current holder, None when unlocked. A damaged lock reads as an expired one.

    Raises StorageError when the storage cannot be read."""
    try:
        raw = storage.read(key)
    except ObjectNotFoundError:
        return None
    try:
        data = loads(raw, key)
        if not _NONCE.fullmatch(str(data["nonce"])):
            raise ValueError("the nonce names no lock")
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
        timeout: float = 0.0,
        poll_interval: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._storage = storage
        self._repository = repository
        self._command = command
        self._ttl = ttl
        self._clock = clock
        self._timeout = timeout
        self._poll_interval = poll_interval
        self._sleep = sleep
        self._monotonic = monotonic
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        self._lost: str | None = None
        self.taken_over: str | None = None
        """Why the lock found on acquiring was stale, when this lock took it over."""
        now = clock()
        self.holder = LockHolder(
            host=socket.gethostname(),
            pid=os.getpid(),
            nonce=secrets.token_hex(4),
            command=command,
            created_at=now,
            expires_at=now + ttl,
        )

    # ------------------------------------------------------------- acquiring

    def acquire(self) -> None:
        """Take the lock, taking over a stale one, waiting up to ``timeout`` seconds
        while a live process holds it.

        Raises LockedError naming the holder, StorageError when the storage fails."""
        deadline = self._monotonic() + self._timeout
        waited = False
        try:
            while (holder := self._attempt()) is not None:
                remaining = deadline - self._monotonic()
                if remaining <= 0:
                    raise LockedError(self._locked_message(holder, waited))
                waited = True
                self._sleep(min(self._poll_interval, remaining))
        except BaseException:
            # Interrupted (a signal, the storage failing) possibly after creating
            # our lock: do not leave it for a minute-long wait on expiry.
            self.release()
            raise
        self._renewer = threading.Thread(target=self._renew_loop, daemon=True, name="lock-renew")
        self._renewer.start()

    def _locked_message(self, holder: LockHolder, waited: bool) -> str:
        wait = f" (waited {self._timeout:g} seconds)" if waited else ""
        return (
            f"the repository {self._repository} is locked by {holder.describe()}{wait};"
            " try again later (or pass --lock-timeout to wait), or run `backupctl unlock`"
            " if that process is gone"
        )

    def _attempt(self) -> LockHolder | None:
        """One try: None once we hold the lock, else the live process in the way."""
        for _ in range(_ATTEMPTS):
            stamp = self._clock()
            self.holder = replace(self.holder, created_at=stamp, expires_at=stamp + self._ttl)
            try:
                self._storage.create_exclusive(LOCK_KEY, _payload(self.holder))
                return None
            except ObjectExistsError:
                pass
            current = read_lock(self._storage)
            if current is None:
                continue  # released in between: try again
            reason = stale_reason(current, self._clock())
            if reason is None:
                return current
            blocker = self._break(LOCK_KEY, current, depth=0)
            if blocker is not None:
                return blocker
            self.taken_over = f"took over the lock of {current.describe()}: {reason}"
        raise LockedError(
            f"could not take the lock of repository {self._repository}: it kept changing hands"
        )

    def _break(self, key: str, stale: LockHolder, depth: int) -> LockHolder | None:
        """Delete the stale lock (or claim) ``stale`` found at ``key``, if still there,
        after winning the claim on its nonce. None when done (deleted, or it was
        gone already), else the live process whose claim is in the way."""
        claim_key = f"{CLAIMS_DIR}/{stale.nonce}.json"
        claim = replace(
            self.holder, expires_at=self._clock() + CLAIM_TTL, command=f"{self._command} (takeover)"
        )
        failpoint("lock-stale")
        try:
            self._storage.create_exclusive(claim_key, _payload(claim))
        except ObjectExistsError:
            other = read_lock(self._storage, claim_key)
            if other is None:
                return None  # that takeover just finished: look again
            if stale_reason(other, self._clock()) is None or depth >= _MAX_CLAIM_DEPTH:
                return other
            # A taker died holding the claim: break its claim the same way first.
            return self._break(claim_key, other, depth + 1)
        try:
            current = read_lock(self._storage, key)
            failpoint("lock-takeover")
            if current is not None and current.nonce == stale.nonce:
                self._storage.delete(key)
        finally:
            self._storage.delete(claim_key)
        return None

    # ------------------------------------------------------------- holding

    @property
    def lost(self) -> str | None:
        """Why this process no longer holds the lock it took, or None while it does."""
        return self._lost

    def ensure_held(self) -> None:
        """Return while the lock is ours with lease to spare.

        Raises LockedError once the lock was taken away or could not be renewed:
        from then on another process may be writing, so this one must stop."""
        if self._lost is None and self._clock() >= self.holder.expires_at - self._margin:
            self._lost = (
                f"its lock could not be renewed before {format_time(self.holder.expires_at)}"
            )
        if self._lost is not None:
            raise LockedError(f"stopped writing to repository {self._repository}: {self._lost}")

    @property
    def _margin(self) -> timedelta:
        # Stop writing well before the lease ends: another host judges expiry by
        # its own clock, and a renewal in flight must not land after the expiry.
        return self._ttl / 3

    def _renew_loop(self) -> None:
        interval = self._ttl.total_seconds() / 3
        wait = interval
        while not self._stop.wait(wait):
            try:
                self.ensure_held()
                self._renew()
                wait = interval
            except LockedError:
                return
            except Exception:
                # Storage trouble (or anything else) must neither kill this thread
                # with a traceback nor the backup: retry soon, the lease gives
                # slack, and ensure_held stops the writes if it runs out.
                wait = min(interval, _RENEW_RETRY_SECONDS)

    def _renew(self) -> None:
        current = read_lock(self._storage)
        if current is None:
            self._lost = "its lock was removed (by `backupctl unlock`?)"
            return
        if current.nonce != self.holder.nonce:
            self._lost = f"its lock was taken over by {current.describe()}"
            return
        renewed = replace(self.holder, expires_at=self._clock() + self._ttl)
        self._storage.write_atomic(LOCK_KEY, _payload(renewed))
        self.holder = renewed

    # ------------------------------------------------------------- releasing

    def release(self) -> None:
        """Stop renewing and delete the lock if it is still ours and not expired.

        An expired lock is left for takeover: deleting it could race with a
        process taking it over. Never raises for storage failures (the lease
        expires on its own)."""
        self._stop.set()
        if self._renewer is not None and self._renewer is not threading.current_thread():
            self._renewer.join()
        try:
            current = read_lock(self._storage)
            if (
                current is not None
                and current.nonce == self.holder.nonce
                and self._clock() < current.expires_at
            ):
                self._storage.delete(LOCK_KEY)
        except StorageError:
            pass

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


def _payload(holder: LockHolder) -> bytes:
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
