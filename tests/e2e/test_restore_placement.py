"""Where a restore puts its files on ext4: away from inodes freed just before.

ext4 without a journal scans past every inode freed in the last minutes for
each new file; a restore right after deleting a tree (clearing a damaged tree
for ``--in-place --force``) paid about half a millisecond a file for it. The
restore now builds its tree below a staging folder flagged as top-level
(``chattr +T``), under a random name, so ext4 places it in a group of block
groups of its own. How much faster that is is measured by the benchmark
(``bench/``), not here: these tests check what a user can see with
``lsattr`` while a restore is stopped before moving its sources into place.
"""

from __future__ import annotations

import fcntl
import os
import struct
from pathlib import Path

import pytest

from tests.e2e.conftest import Runner, Workspace
from tests.e2e.processes import start

FS_IOC_GETFLAGS = 0x80086601
FS_IOC_SETFLAGS = 0x40086602
FS_TOPDIR_FL = 0x00020000


def inode_flags(path: Path) -> int:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        buffer = bytearray(8)
        fcntl.ioctl(fd, FS_IOC_GETFLAGS, buffer)
        return int(struct.unpack_from("i", buffer)[0])
    finally:
        os.close(fd)


def supports_top_level_flag(folder: Path) -> bool:
    probe = folder / "probe"
    probe.mkdir()
    fd = os.open(probe, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.ioctl(fd, FS_IOC_SETFLAGS, struct.pack("ii", FS_TOPDIR_FL, 0))
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
        probe.rmdir()


def stopped_restore(workspace: Workspace, target: Path, logs: Path) -> tuple[Path, Path]:
    """Restore the identity source to ``target``, stopped once it is staged;
    return the staging folder and what it holds, and let it finish."""
    restore = start(
        workspace.root,
        logs,
        "restore",
        "-f",
        workspace.config,
        "--backup",
        "latest",
        "--key",
        workspace.private_key,
        "--to",
        target,
        "--source",
        "identity",
        "--force",
        env={"BACKUPCTL_FAILPOINTS": "restore-staged:stop"},
    )
    try:
        restore.wait_for("failpoint restore-staged reached")
        (staging,) = target.glob(".backupctl-restore-*")
        (staged,) = staging.iterdir()
        flags = inode_flags(staging), inode_flags(staged)
    finally:
        restore.resume()
    result = restore.finish()
    assert result.code == 0, result.text
    assert flags[0] & FS_TOPDIR_FL, "the staging folder is not flagged as top-level"
    assert not flags[1] & FS_TOPDIR_FL, "the restored tree itself must not carry the flag"
    return staging, staged


def test_a_restore_builds_its_tree_where_ext4_places_top_level_folders(
    workspace: Workspace, run: Runner, tmp_path: Path
) -> None:
    if not supports_top_level_flag(tmp_path):
        pytest.skip(f"{tmp_path} is not on a file system with the top-level folder flag")
    assert run("apply", "-f", workspace.config).code == 0
    target = tmp_path / "restored"
    _, first = stopped_restore(workspace, target, tmp_path / "logs")
    assert not inode_flags(target / "identity") & FS_TOPDIR_FL
    assert not list(target.glob(".backupctl-restore-*")), "the staging folder is left behind"
    # Restoring again at once, as after clearing a damaged tree: a new name,
    # so ext4 starts its search elsewhere than where the first one went.
    _, second = stopped_restore(workspace, target, tmp_path / "logs")
    assert first.name != second.name
    assert (target / "identity").is_dir()
