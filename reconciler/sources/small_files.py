"""Creating the small files of a restore in worker processes.

Creating a file costs the kernel far more than writing a few kilobytes into
it, and that cost runs in parallel on every core. Threads of the restoring
process cannot use that well: each file takes four system calls, and after
each the thread waits for the interpreter lock, which the thread parsing the
archive holds most of the time. Worker processes have locks of their own.
They get the files through pipes, in batches, and create them while the
archive is read on; the restoring process sees their first failure at its
next batch or at ``close``, as a RestoreError naming the file.

A restore of a few small files never starts a worker: they are written by
the restoring process itself.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

from reconciler.errors import RestoreError
from reconciler.sources._small_file_worker import CHOWN, PLAIN, RECORD, write_file

BATCH_FILES = 64
BATCH_BYTES = 1024 * 1024
"""Files go to a worker in batches of up to this many files or bytes."""
MAX_WORKERS = 4
PIPE_BYTES = 1024 * 1024
"""Pipe capacity asked for (Linux; the default of 64 KiB makes more wake-ups)."""
WORKER = Path(__file__).with_name("_small_file_worker.py")


class FileEnd(NamedTuple):
    """What a restored file gets besides its data (a named tuple: one is made
    per file, and a restore can hold hundreds of thousands)."""

    mode: int
    plain: bool
    """The mode can be given when the file is created (no umask or chown concern)."""
    owner: tuple[int, int] | None
    """The owner to set, None when it already is the right one."""
    mtime_ns: int


def worker_count() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_WORKERS))


def failure(path: bytes, step: str, code: int) -> RestoreError:
    """The RestoreError for a file whose ``step`` ("create" or "write") failed."""
    name = os.fsdecode(path)
    if step == "create" and code == errno.EEXIST:
        return RestoreError(f"the restore target already holds {name}")
    reason = os.strerror(code).lower() if code else "unknown error"
    verb = "created" if step == "create" else "written"
    return RestoreError(f"the file {name} cannot be {verb} ({reason})")


def write_here(path: bytes, data: memoryview, end: FileEnd) -> None:
    """Create one file in this process. Raises RestoreError naming it."""
    try:
        write_file(path, data, end.mtime_ns, end.mode, end.owner, end.plain)
    except OSError as exc:
        raise failure(path, str(exc.filename), exc.errno or 0) from None


def _record(path: bytes, data: memoryview, end: FileEnd) -> tuple[bytes, bytes, memoryview]:
    """What a worker reads for one file (see _small_file_worker)."""
    flags = (PLAIN if end.plain else 0) | (CHOWN if end.owner is not None else 0)
    uid, gid = end.owner or (-1, -1)
    return RECORD.pack(len(path), len(data), end.mtime_ns, end.mode, uid, gid, flags), path, data


class _Worker:
    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-S", str(WORKER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            close_fds=True,
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self.input = self.process.stdin.fileno()
        self.report = self.process.stdout.fileno()
        os.set_blocking(self.report, False)
        with contextlib.suppress(AttributeError, OSError):  # not Linux, or capped
            fcntl.fcntl(self.input, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        self.reported = b""

    def send(self, payload: bytes) -> bool:
        """Write ``payload`` to the worker; False when it is gone."""
        view = memoryview(payload)
        try:
            while view:
                view = view[os.write(self.input, view) :]
        except BrokenPipeError:
            return False
        return True

    def poll_report(self) -> None:
        try:
            while chunk := os.read(self.report, 65536):
                self.reported += chunk
        except BlockingIOError:
            pass

    def finish(self) -> RestoreError | None:
        """Close its input, wait for it; its failure, if any."""
        assert self.process.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self.process.stdin.close()
        self.process.wait()
        os.set_blocking(self.report, True)
        self.poll_report()
        assert self.process.stdout is not None
        self.process.stdout.close()
        return self.error()

    def error(self) -> RestoreError | None:
        if self.reported.count(b"\0") >= 2:
            code, step, path = self.reported.split(b"\0", 2)
            return failure(path, step.decode(), int(code))
        if self.process.returncode not in (None, 0):
            return RestoreError(
                "the process creating restored files stopped unexpectedly"
                f" (exit status {self.process.returncode})"
            )
        return None

    def kill(self) -> None:
        self.process.kill()
        self.finish()


class SmallFileWriters:
    """Creates small files, in any order, in worker processes started on first need.

    The first failure is raised by the next ``submit`` or by ``close``; files
    queued after it may or may not be written."""

    def __init__(self, workers: int | None = None) -> None:
        self._count = workers or worker_count()
        self._workers: list[_Worker] = []
        self._next = 0
        self._batch: list[tuple[bytes, memoryview, FileEnd]] = []
        self._batch_bytes = 0
        self._error: RestoreError | None = None

    def submit(self, path: bytes, data: memoryview, end: FileEnd) -> None:
        if self._error is not None:
            raise self._error
        self._batch.append((path, data, end))
        self._batch_bytes += len(data)
        if len(self._batch) >= BATCH_FILES or self._batch_bytes >= BATCH_BYTES:
            self._flush()

    def _start(self) -> None:
        try:
            self._workers = [_Worker() for _ in range(self._count)]
        except OSError as exc:
            for worker in self._workers:
                worker.kill()
            self._workers = []
            raise RestoreError(
                f"cannot start the processes that create restored files ({exc.strerror})"
            ) from None

    def _flush(self) -> None:
        # The first full batch starts the workers: a restore of a few files
        # never does (``close`` writes them here).
        if not self._workers:
            self._start()
        payload = b"".join(part for job in self._batch for part in _record(*job))
        self._batch, self._batch_bytes = [], 0
        worker = self._workers[self._next]
        self._next = (self._next + 1) % len(self._workers)
        sent = worker.send(payload)
        for each in self._workers:
            each.poll_report()
            error = each.error()
            if error is not None:
                self._error = error
                raise error
        if not sent:
            self._error = worker.finish() or RestoreError(
                "the process creating restored files stopped unexpectedly"
            )
            raise self._error

    def close(self, report: bool = True) -> None:
        """Write what is queued and wait for the workers; raise the first failure.

        With ``report`` False (the restore failed elsewhere) the workers are
        stopped at once, queued files dropped, and nothing is raised."""
        if not report:
            for worker in self._workers:
                worker.kill()
            self._workers, self._batch = [], []
            return
        if self._error is not None:
            self.close(report=False)
            raise self._error
        if not self._workers:
            for job in self._batch:
                write_here(*job)
            self._batch = []
        elif self._batch:
            self._flush()
        errors = [worker.finish() for worker in self._workers]
        self._workers = []
        for error in errors:
            if error is not None:
                self._error = error
                raise error
