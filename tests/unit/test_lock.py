"""The repository lock beyond the basics: takeover claims, waiting, losing the lock.

The basics (refusal naming the holder, expiry, dead processes, damaged lock
files, the race of two takers) are in test_apply_memory.py."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from reconciler.errors import LockedError
from reconciler.repository.fenced import FencedStorage
from reconciler.repository.layout import LOCK_KEY
from reconciler.repository.lock import CLAIMS_DIR, RepositoryLock, read_lock
from reconciler.repository.records import dumps
from reconciler.storage.local import LocalStorage
from reconciler.storage.memory import MemoryStorage
from reconciler.timeutil import format_time, now_utc

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def holder_json(*, host: str, pid: int, nonce: str, expires: datetime, command: str) -> bytes:
    return dumps(
        {
            "host": host,
            "pid": pid,
            "nonce": nonce,
            "command": command,
            "createdAt": format_time(expires - timedelta(minutes=5)),
            "expiresAt": format_time(expires),
        }
    )


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def stale_lock(storage: MemoryStorage, nonce: str = "5ca1ab1e") -> None:
    storage.write_atomic(
        LOCK_KEY,
        holder_json(
            host="gone.invalid",
            pid=4242,
            nonce=nonce,
            expires=T0 - timedelta(minutes=1),
            command="backupctl apply",
        ),
    )


def test_a_takeover_claim_left_by_a_taker_that_died_is_broken() -> None:
    storage = MemoryStorage()
    stale_lock(storage)
    claim = holder_json(
        host=socket.gethostname(),
        pid=dead_pid(),
        nonce="dec0de01",
        expires=T0 + timedelta(minutes=1),
        command="backupctl apply (takeover)",
    )
    storage.write_atomic(f"{CLAIMS_DIR}/5ca1ab1e.json", claim)
    with RepositoryLock(storage, "region-west", "backupctl daemon", clock=Clock(T0)) as lock:
        assert read_lock(storage) == lock.holder
        assert lock.taken_over is not None and "gone.invalid" in lock.taken_over
    assert not any(k.startswith(CLAIMS_DIR) for k in storage.objects)


def test_a_takeover_in_progress_elsewhere_is_reported_as_the_holder() -> None:
    storage = MemoryStorage()
    stale_lock(storage)
    claim = holder_json(
        host="other-host.invalid",
        pid=77,
        nonce="c1a1e001",
        expires=T0 + timedelta(minutes=1),
        command="backupctl daemon (takeover)",
    )
    storage.write_atomic(f"{CLAIMS_DIR}/5ca1ab1e.json", claim)
    with pytest.raises(LockedError, match=r"locked by backupctl daemon \(takeover\) \(pid 77"):
        RepositoryLock(storage, "region-west", "backupctl apply", clock=Clock(T0)).acquire()
    current = read_lock(storage)
    assert current is not None and current.nonce == "5ca1ab1e", "the stale lock was left alone"


def test_a_lock_with_a_nonce_that_could_escape_the_repository_reads_as_damaged() -> None:
    storage = MemoryStorage()
    storage.write_atomic(
        LOCK_KEY,
        holder_json(host="h", pid=1, nonce="../../x", expires=T0 + timedelta(hours=1), command="x"),
    )
    holder = read_lock(storage)
    assert holder is not None and holder.nonce == "damaged"
    with RepositoryLock(storage, "region-west", "backupctl apply", clock=Clock(T0)) as lock:
        assert read_lock(storage) == lock.holder


def test_waiting_for_the_lock_takes_it_once_the_holder_releases() -> None:
    storage = MemoryStorage()
    first = RepositoryLock(storage, "region-west", "backupctl apply")
    first.acquire()
    threading.Timer(0.3, first.release).start()
    second = RepositoryLock(
        storage, "region-west", "backupctl daemon", timeout=60, poll_interval=0.05
    )
    started = time.monotonic()
    with second:
        assert read_lock(storage) == second.holder
    # Taken soon after the release, not at the end of the 60 s it may wait.
    assert 0.25 < time.monotonic() - started < 30


def test_waiting_in_vain_says_how_long_it_waited_and_who_holds_the_lock() -> None:
    storage = MemoryStorage()
    with RepositoryLock(storage, "region-west", "backupctl apply") as first:
        waiting = RepositoryLock(
            storage, "region-west", "backupctl daemon", timeout=0.2, poll_interval=0.05
        )
        with pytest.raises(LockedError) as caught:
            waiting.acquire()
    message = str(caught.value)
    assert f"nonce {first.holder.nonce}" in message
    assert "waited 0.2 seconds" in message


def test_waiting_polls_every_interval_until_the_timeout_without_real_sleeps() -> None:
    """The wait goes through an injected clock: a test (or a daemon shutting
    down) never has to spend the real seconds."""
    storage = MemoryStorage()
    now = [1000.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    with RepositoryLock(storage, "region-west", "backupctl apply"):
        waiting = RepositoryLock(
            storage,
            "region-west",
            "backupctl daemon",
            timeout=2.5,
            poll_interval=1.0,
            sleep=sleep,
            monotonic=lambda: now[0],
        )
        with pytest.raises(LockedError, match=r"waited 2\.5 seconds"):
            waiting.acquire()
    assert slept == [1.0, 1.0, 0.5]


def test_a_holder_whose_lock_was_taken_over_stops_writing() -> None:
    storage = MemoryStorage()
    lock = RepositoryLock(storage, "region-west", "backupctl apply", ttl=timedelta(seconds=3))
    lock.acquire()
    fenced = FencedStorage(storage, lock.ensure_held)
    fenced.write_atomic("backups/x/part", b"written while the lock is ours")
    storage.write_atomic(
        LOCK_KEY,
        holder_json(
            host="other-host.invalid",
            pid=99,
            nonce="0the4500",
            expires=now_utc() + timedelta(minutes=5),
            command="backupctl daemon",
        ),
    )
    deadline = time.monotonic() + 30
    while lock.lost is None and time.monotonic() < deadline:
        time.sleep(0.05)  # the renewal thread looks every ttl/3 = 1 s
    assert lock.lost is not None and "other-host.invalid" in lock.lost
    with pytest.raises(LockedError, match="stopped writing to repository region-west"):
        fenced.write_atomic("backups/x/more", b"must not be written")
    with pytest.raises(LockedError), fenced.open_write("backups/x/stream") as out:
        out.write(b"nor this")
    assert "backups/x/more" not in storage.objects
    lock.release()
    current = read_lock(storage)
    assert current is not None and current.nonce == "0the4500", "release left theirs alone"


def test_a_holder_that_could_not_renew_in_time_stops_writing_and_leaves_the_lock() -> None:
    storage = MemoryStorage()
    clock = Clock(T0)
    lock = RepositoryLock(storage, "region-west", "backupctl apply", clock=clock)
    lock.acquire()
    try:
        clock.now = T0 + timedelta(minutes=3, seconds=19)  # just over a third of the lease left
        lock.ensure_held()
        clock.now = T0 + timedelta(minutes=3, seconds=20)
        with pytest.raises(LockedError, match="could not be renewed before"):
            lock.ensure_held()
        clock.now = T0 + timedelta(minutes=6)
    finally:
        lock.release()
    # Deleting an expired lock could race with a process taking it over.
    assert read_lock(storage) == lock.holder


# ------------------------------------------------------------------ two takers, one stale lock


class TakeoverBeforeClaim(MemoryStorage):
    """Storage shared with a rival process that runs its whole takeover of the stale
    lock ``nonce`` in the moment after this process read that stale lock and before
    it claims it: the interleaving the nonce re-check after claiming exists for.

    The rival runs once, from inside this process's claim, so the order is fixed:
    no sleeps, no threads racing."""

    def __init__(self, nonce: str) -> None:
        super().__init__("shared")
        self.claim_key = f"{CLAIMS_DIR}/{nonce}.json"
        self.rival: RepositoryLock | None = None

    def create_exclusive(self, key: str, data: bytes) -> None:
        if key == self.claim_key and self.rival is not None:
            rival, self.rival = self.rival, None
            rival.acquire()
            # The rival's claim on the stale lock is gone with its takeover.
            assert not self.exists(self.claim_key)
        super().create_exclusive(key, data)


def test_a_taker_that_claims_after_another_took_over_leaves_the_new_lock_alone() -> None:
    storage = TakeoverBeforeClaim("5ca1ab1e")
    stale_lock(storage, nonce="5ca1ab1e")
    clock = Clock(T0)
    rival = RepositoryLock(storage, "region-west", "backupctl daemon", clock=clock)
    storage.rival = rival
    mine = RepositoryLock(storage, "region-west", "backupctl apply", clock=clock)
    try:
        with pytest.raises(LockedError, match=f"locked by backupctl daemon .*{rival.holder.nonce}"):
            mine.acquire()
        assert storage.rival is None, "the rival's takeover did not run between read and claim"
        assert rival.taken_over is not None and "gone.invalid" in rival.taken_over
        # Exactly one holder: the rival, whose fresh lock was not deleted as "the stale one".
        assert read_lock(storage) == rival.holder
        assert storage.deleted.count(LOCK_KEY) == 1, "only the stale lock was ever deleted"
        assert not any(k.startswith(CLAIMS_DIR) for k in storage.objects)
    finally:
        mine.release()
        rival.release()
    assert not storage.exists(LOCK_KEY)


# ------------------------------------------------------------------ another user's process

NOBODY = 65534


def take_as_nobody(folder: Path, holder_pid: int) -> tuple[int, str]:
    """Try to take the lock of ``folder`` in a forked child that, when the tests run as
    root, first becomes ``nobody`` (the venv's interpreter may be unreadable to
    nobody, so the child does not exec). Returns its exit status and message:
    0 and the LockedError when refused, 1 when it took the lock."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns, reports through the pipe
        status, message = 2, "the child failed"
        try:
            os.close(read_end)
            status, message = _take_in_child(folder, holder_pid)
        except BaseException as exc:
            message = f"the child failed: {exc!r}"
        finally:
            os.write(write_end, message.encode())
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        message = pipe.read().decode()
    _, wait_status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(wait_status), message


def _take_in_child(folder: Path, holder_pid: int) -> tuple[int, str]:
    if os.geteuid() == 0:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
    try:
        os.kill(holder_pid, 0)
        return 3, "the holder's process can be signalled: it is not another user's"
    except PermissionError:
        pass
    try:
        RepositoryLock(LocalStorage(folder), "region-west", "backupctl apply").acquire()
    except LockedError as exc:
        return 0, str(exc)
    return 1, "took the lock"


@pytest.fixture
def shared_folder() -> Iterator[Path]:
    """A repository folder that a user other than root may write to."""
    folder = Path(tempfile.mkdtemp(prefix="backupctl-lock-"))
    try:
        folder.chmod(0o777)
        yield folder
    finally:
        shutil.rmtree(folder)


@pytest.fixture
def other_users_process() -> Iterator[int]:
    """The pid of a live process that the taker (run as ``nobody`` when the tests
    run as root, else as ourselves) may not signal: ``kill(pid, 0)`` says EPERM."""
    if os.geteuid() != 0:
        if os.stat("/proc/1").st_uid == os.geteuid():
            pytest.skip("no process of another user to hold the lock (pid 1 is ours)")
        yield 1
        return
    holder = subprocess.Popen(["sleep", "600"])
    try:
        yield holder.pid
    finally:
        holder.kill()
        holder.wait()


def test_a_live_process_of_another_user_on_this_host_keeps_its_lock(
    shared_folder: Path, other_users_process: int
) -> None:
    storage = LocalStorage(shared_folder)
    storage.write_atomic(
        LOCK_KEY,
        holder_json(
            host=socket.gethostname(),
            pid=other_users_process,
            nonce="a11ve001",
            expires=now_utc() + timedelta(minutes=5),
            command="backupctl daemon",
        ),
    )
    status, message = take_as_nobody(shared_folder, other_users_process)
    assert status == 0, message
    assert f"locked by backupctl daemon (pid {other_users_process} on" in message
    current = read_lock(storage)
    assert current is not None and current.nonce == "a11ve001", "the live holder lost its lock"
    assert not (shared_folder / CLAIMS_DIR).exists()
