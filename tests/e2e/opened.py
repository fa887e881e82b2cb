"""Knowing that some process opened a file, without a fixed sleep (Linux inotify).

A process that waits for the repository lock gives no sign of it but reading
the lock file now and then; watching for that read tells a test that the
process got as far as the lock, however slowly a busy machine started it."""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import time
from collections.abc import Callable, Iterator
from pathlib import Path

_IN_ACCESS = 0x001
_IN_OPEN = 0x020
_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = os.O_CLOEXEC

_libc = ctypes.CDLL(None, use_errno=True)


@contextlib.contextmanager
def watch_opens(path: Path) -> Iterator[Callable[[Callable[[], None], float], None]]:
    """Watch ``path`` (which must exist) for being opened or read.

    Yields ``wait(check, timeout)``: returns at the first open or read since the
    watch began, calls ``check`` between looks (to fail early when the process
    expected to open the file has exited), and fails after ``timeout`` seconds."""
    fd = _libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "inotify_init1")
    try:
        if _libc.inotify_add_watch(fd, os.fsencode(path), _IN_OPEN | _IN_ACCESS) < 0:
            raise OSError(ctypes.get_errno(), f"inotify_add_watch {path}")

        def wait(check: Callable[[], None], timeout: float) -> None:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                ready, _, _ = select.select([fd], [], [], 0.1)
                if ready and os.read(fd, 4096):
                    return
                check()
            raise AssertionError(f"nothing opened {path} within {timeout:g} s")

        yield wait
    finally:
        os.close(fd)
