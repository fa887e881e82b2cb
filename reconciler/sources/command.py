"""The ``command`` source: a program's stdout is the backup; restore feeds its stdin.

Commands run without a shell, in their own session and process group, so that
a timeout can stop the command together with everything it started. A
watchdog timer enforces the timeout even while the command prints nothing: it
kills the whole group, which closes the pipes we are blocked on.

Known limits: a child that leaves the process group (``setsid``, daemons) is
out of reach of the timeout kill, and if it keeps our pipes open we wait for
it. A restore command that exits with status 0 before reading all its input
counts as a success (its exit status is what is reported).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from reconciler.errors import SourceError
from reconciler.sources.stats import SourceStats, write_all
from reconciler.streams import CHUNK_SIZE, ByteSink, ByteSource

_OUTPUT_TAIL_BYTES = 4096
_LINE_LIMIT = 300


def run_backup_command(
    argv: tuple[str, ...],
    timeout_seconds: float,
    out: ByteSink,
    cwd: Path,
    env: Mapping[str, str] | None = None,
) -> SourceStats:
    """Run ``argv`` in ``cwd`` and copy its stdout to ``out`` as it arrives.

    ``env`` replaces the environment when given. stderr is kept (its last
    4 KiB) for the error message. Returns one item and the bytes of stdout.
    Raises ``SourceError`` naming the command when it cannot be started, exits
    with a non-zero status or is killed, or does not finish within
    ``timeout_seconds`` (it is then killed with its process group)."""
    run = _Run("backup", argv, timeout_seconds, cwd, env, feed_input=False)
    stdout = run.process.stdout
    assert stdout is not None  # stdout=PIPE
    size = 0
    try:
        while chunk := os.read(stdout.fileno(), CHUNK_SIZE):
            out.write(chunk)
            size += len(chunk)
        status = run.finish()
    except BaseException:
        run.abort()
        raise
    run.check(status)
    return SourceStats(items=1, content_bytes=size)


def run_restore_command(
    argv: tuple[str, ...],
    timeout_seconds: float,
    stream: ByteSource,
    cwd: Path,
    env: Mapping[str, str] | None = None,
) -> SourceStats:
    """Run ``argv`` in ``cwd`` and write ``stream`` to its stdin in chunks.

    The command's stdout and stderr are kept together (the last 4 KiB) for the
    error message. A command that stops reading early is judged by its exit
    status. Returns one item and the bytes delivered. Raises ``SourceError``
    like ``run_backup_command``; an error reading ``stream`` kills the command
    and propagates unchanged."""
    run = _Run("restore", argv, timeout_seconds, cwd, env, feed_input=True)
    stdin = run.process.stdin
    assert stdin is not None  # stdin=PIPE
    size = 0
    try:
        while chunk := stream.read(CHUNK_SIZE):
            try:
                write_all(stdin.fileno(), memoryview(chunk))
            except BrokenPipeError:
                break  # the command exited or closed stdin: its status tells
            size += len(chunk)
        _close_quietly(stdin)
        status = run.finish()
    except BaseException:
        run.abort()
        raise
    run.check(status)
    return SourceStats(items=1, content_bytes=size)


def write_dump(stream: ByteSource, target_file: Path) -> SourceStats:
    """Copy a command's dump from ``stream`` to the file ``target_file``, in chunks.

    Returns one item and the bytes written. Raises OSError when the file
    cannot be written."""
    size = 0
    with target_file.open("wb") as file:
        while chunk := stream.read(CHUNK_SIZE):
            file.write(chunk)
            size += len(chunk)
    return SourceStats(items=1, content_bytes=size)


def read_dump(stream: ByteSource) -> SourceStats:
    """Read a command's dump to its end, keeping nothing; one item and its size.

    A dump has no structure of its own to check: reading it through is what
    lets the layers below authenticate and decompress all of it."""
    size = 0
    while chunk := stream.read(CHUNK_SIZE):
        size += len(chunk)
    return SourceStats(items=1, content_bytes=size)


class _Run:
    """One started command with its output collector and its watchdog."""

    def __init__(
        self,
        role: str,
        argv: tuple[str, ...],
        timeout_seconds: float,
        cwd: Path,
        env: Mapping[str, str] | None,
        *,
        feed_input: bool,
    ) -> None:
        if not argv:
            raise SourceError(f"the {role} command is empty")
        self.description = f"the {role} command `{shlex.join(argv)}`"
        self._timeout_seconds = timeout_seconds
        self.process, output = _start(self.description, argv, cwd, env, feed_input=feed_input)
        self._output = _OutputTail(output)
        self._output.start()
        self._watchdog = _Watchdog(self.process.pid, timeout_seconds)

    def finish(self) -> int:
        """Wait for the command and its output to end; returns the exit status.

        The watchdog stays armed until the process has exited and its output
        is closed, and is disarmed before the process is reaped, so it can never
        signal a reused process id."""
        _wait_until_exited(self.process.pid)
        self._output.join()
        self._watchdog.disarm()
        status = self.process.wait()
        self._close_pipes()
        return status

    def abort(self) -> None:
        """Kill the command's process group and reap it (on our own errors)."""
        self._watchdog.disarm()
        if self.process.returncode is None:
            _kill_group(self.process.pid)  # not reaped yet: the id is still ours
        self.process.wait()
        self._output.join(timeout=5)
        self._close_pipes()

    def _close_pipes(self) -> None:
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                _close_quietly(pipe)

    def check(self, status: int) -> None:
        """Raise ``SourceError`` unless the command ended in time with status 0."""
        if self._watchdog.fired:
            raise SourceError(
                f"{self.description} did not finish within {self._timeout_seconds:g} seconds "
                "and was stopped"
            )
        if status == 0:
            return
        line = self._output.last_line()
        detail = f": {line}" if line else " and printed no error message"
        if status < 0:
            raise SourceError(
                f"{self.description} was killed by signal {_signal_name(-status)}{detail}"
            )
        raise SourceError(f"{self.description} exited with status {status}{detail}")


def _start(
    description: str,
    argv: tuple[str, ...],
    cwd: Path,
    env: Mapping[str, str] | None,
    *,
    feed_input: bool,
) -> tuple[subprocess.Popen[bytes], IO[bytes]]:
    """Start ``argv`` without a shell in a new session (so its own process group).

    Returns the process and the pipe its messages come from: stderr for a
    backup command (stdout is the data); stdout and stderr together for a
    restore command. Raises ``SourceError`` naming the command or the folder
    when it cannot start."""
    if feed_input:
        messages_read, messages_write = os.pipe()
        stdin, stdout, stderr = subprocess.PIPE, messages_write, messages_write
    else:
        stdin, stdout, stderr = subprocess.DEVNULL, subprocess.PIPE, subprocess.PIPE
    try:
        process = subprocess.Popen(
            list(argv),
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            cwd=cwd,
            env=None if env is None else dict(env),
            start_new_session=True,
            bufsize=0,
        )
    except OSError as exc:
        if feed_input:
            os.close(messages_read)
        raise SourceError(_start_error(description, argv, cwd, exc)) from exc
    finally:
        if feed_input:
            os.close(messages_write)  # the child has its copy; EOF comes when it exits
    if feed_input:
        return process, os.fdopen(messages_read, "rb", buffering=0)
    assert process.stderr is not None
    messages, process.stderr = process.stderr, None  # the collector owns it now
    return process, messages


def _start_error(description: str, argv: tuple[str, ...], cwd: Path, exc: OSError) -> str:
    """The message for a command that could not be started."""
    if isinstance(exc, FileNotFoundError):
        if exc.filename is not None and str(exc.filename) == str(cwd):
            return f"the working folder {cwd} of {description} does not exist"
        return f"{description} cannot be started because {argv[0]} was not found"
    if isinstance(exc, PermissionError):
        return f"{description} cannot be started because {argv[0]} is not executable"
    return f"{description} cannot be started ({exc.strerror})"


class _OutputTail(threading.Thread):
    """Reads a pipe to its end in the background, keeping its last 4 KiB.

    Reading keeps the command from blocking on a full pipe; only the end is
    kept because that is where the error message is."""

    def __init__(self, pipe: IO[bytes]) -> None:
        super().__init__(name="command-output", daemon=True)
        self._pipe = pipe
        self._tail = bytearray()

    def run(self) -> None:
        try:
            while chunk := os.read(self._pipe.fileno(), 64 * 1024):
                self._tail += chunk
                del self._tail[:-_OUTPUT_TAIL_BYTES]
        except OSError:
            pass  # the pipe went away: keep what was read
        finally:
            _close_quietly(self._pipe)

    def last_line(self) -> str:
        """The last non-empty line of the output, shortened; "" when there is none."""
        text = bytes(self._tail).decode("utf-8", errors="replace")
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if not lines:
            return ""
        last = lines[-1]
        return last if len(last) <= _LINE_LIMIT else last[: _LINE_LIMIT - 3] + "..."


class _Watchdog:
    """Kills the process group ``pgid`` when ``timeout_seconds`` have passed."""

    def __init__(self, pgid: int, timeout_seconds: float) -> None:
        self._pgid = pgid
        self._lock = threading.Lock()
        self._armed = True
        self.fired = False
        self._timer = threading.Timer(timeout_seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def _expire(self) -> None:
        with self._lock:
            if self._armed:
                self.fired = True
                _kill_group(self._pgid)

    def disarm(self) -> None:
        """Stop the timer; once this returns, it will not kill anything."""
        with self._lock:
            self._armed = False
        self._timer.cancel()


def _kill_group(pgid: int) -> None:
    """SIGKILL every process in the group; a group already gone is fine."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def _wait_until_exited(pid: int) -> None:
    """Block until the child ``pid`` exits, without reaping it (WNOWAIT)."""
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)


def _close_quietly(pipe: IO[bytes]) -> None:
    # BrokenPipeError cannot lose anything here: nothing is buffered (bufsize=0).
    with contextlib.suppress(OSError):
        pipe.close()


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)
