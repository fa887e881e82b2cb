"""A worker process that creates the small files of a restore (see small_files.py).

Run as ``python -I -S _small_file_worker.py``: it imports nothing of backupctl
and starts in milliseconds. It reads file records from standard input until
it ends, and creates each file; the first failure is reported on standard
output as ``errno NUL operation NUL path`` and every later record is read
and dropped. It never writes outside the paths it is sent.
"""

from __future__ import annotations

import contextlib
import os
import struct
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import BinaryIO

RECORD = struct.Struct("<IIqIiiB")
"""path length, data length, mtime in ns, mode, uid, gid, flags"""
PLAIN = 1
"""The mode can be given at creation (no umask or chown concern)."""
CHOWN = 2
"""Set uid and gid (best effort) before the mode."""
CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def create_file(path: bytes, mode: int, plain: bool) -> int:
    """Open a new file for writing (never an existing one, never through a link).

    ``plain``: the mode can be given now; otherwise the file is private until
    ``finish_file`` sets it. Raises OSError."""
    return os.open(path, CREATE_FLAGS, mode if plain else 0o600)


def finish_file(
    fd: int, mtime_ns: int, mode: int, owner: tuple[int, int] | None, plain: bool
) -> None:
    """Give a written file its owner (best effort), mode and mtime. Raises OSError."""
    if owner is not None:
        # Owner before mode: chown clears set-ID bits. An owner the system
        # refuses is skipped (e.g. an id unknown to a user namespace).
        with contextlib.suppress(OSError):
            os.chown(fd, *owner)
    if not plain:
        os.fchmod(fd, mode)
    os.utime(fd, ns=(mtime_ns, mtime_ns))


def write_file(
    path: bytes,
    data: memoryview,
    mtime_ns: int,
    mode: int,
    owner: tuple[int, int] | None,
    plain: bool,
) -> None:
    """Create ``path`` holding ``data``. Raises OSError with ``.filename`` set to
    "create" or "write" (which step failed)."""
    try:
        fd = create_file(path, mode, plain)
    except OSError as exc:
        exc.filename = "create"
        raise
    try:
        while data:
            data = data[os.write(fd, data) :]
        finish_file(fd, mtime_ns, mode, owner, plain)
    except OSError as exc:
        exc.filename = "write"
        raise
    finally:
        os.close(fd)


def serve(source: BinaryIO, report: int) -> None:
    read = source.read
    failed = False
    while header := read(RECORD.size):
        if len(header) < RECORD.size:
            return  # the restoring process stopped mid-record
        path_length, data_length, mtime_ns, mode, uid, gid, flags = RECORD.unpack(header)
        path = read(path_length)
        data = read(data_length)
        if failed:
            continue
        try:
            write_file(
                path,
                memoryview(data),
                mtime_ns,
                mode,
                (uid, gid) if flags & CHOWN else None,
                bool(flags & PLAIN),
            )
        except OSError as exc:
            failed = True
            os.write(report, b"%d\0%s\0%s" % (exc.errno or 0, str(exc.filename).encode(), path))


if __name__ == "__main__":
    with open(0, "rb", buffering=1024 * 1024) as stdin:
        serve(stdin, 1)
