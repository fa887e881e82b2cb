"""Fresh file systems to restore into: an ext4 image made per restore and loop-mounted.

A restore's speed depends on the file system's past as much as on the tool:
ext4 without a journal will not reuse an inode freed in the last minute (five
while its inode table block is unwritten) and scans past every such inode
for each new file. So the benchmark restores into an ext4 made just before
(the figures any machine can reproduce), then deletes that restore and at
once restores again into the same file system (what a user meets restoring
right after clearing a damaged tree).

The image is sparse and mounted with ``noinit_itable``, so no background
zeroing of inode tables runs while a tool is timed. It is made without a
journal, like the root file system of the machines this benchmark runs on:
with a journal, ext4 reuses freed inodes at once and the second restore
would measure nothing new.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

IMAGE_BYTES = 64 * 1024**3
"""Sparse: only what is written takes space. Large enough for ext4 to have 32
groups of block groups to choose from, as on a real disk."""
MKFS = ["mkfs.ext4", "-q", "-F", "-O", "^has_journal"]
MOUNT_OPTIONS = "loop,noinit_itable"


def unavailable(scratch: Path) -> str | None:
    """Why fresh file systems cannot be made here, or None when they can (tried once)."""
    if os.geteuid() != 0:
        return "mounting a file system needs root"
    for tool in ("mkfs.ext4", "mount", "umount"):
        if shutil.which(tool) is None:
            return f"{tool} is missing (Debian: apt-get install -y e2fsprogs mount)"
    try:
        with fresh(scratch, size=256 * 1024**2):
            pass
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", None) or b""
        text = detail.decode(errors="replace").strip() if isinstance(detail, bytes) else ""
        return f"a loop-mounted ext4 cannot be made here ({text or exc})"
    return None


@contextlib.contextmanager
def fresh(scratch: Path, size: int = IMAGE_BYTES) -> Iterator[Path]:
    """A newly made ext4, mounted; unmounted and deleted on leaving."""
    image = scratch / "fresh-fs.img"
    mount_point = scratch / "fresh-fs"
    _release(image, mount_point)
    mount_point.mkdir(parents=True, exist_ok=True)
    with image.open("wb") as stream:
        stream.truncate(size)
    try:
        subprocess.run([*MKFS, str(image)], check=True, capture_output=True)
        subprocess.run(
            ["mount", "-o", MOUNT_OPTIONS, str(image), str(mount_point)],
            check=True,
            capture_output=True,
        )
        try:
            yield mount_point
        finally:
            subprocess.run(["umount", str(mount_point)], check=True, capture_output=True)
    finally:
        image.unlink(missing_ok=True)


def _release(image: Path, mount_point: Path) -> None:
    """Undo what an interrupted run left: a mount and its image."""
    if os.path.ismount(mount_point):
        subprocess.run(["umount", str(mount_point)], check=False, capture_output=True)
    image.unlink(missing_ok=True)
