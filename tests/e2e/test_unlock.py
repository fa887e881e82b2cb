"""`backupctl unlock`: breaks a lock only when told which one (its nonce) or --force."""

from __future__ import annotations

import os
import pty
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.repository.lock import read_lock
from reconciler.storage.local import LocalStorage
from tests.e2e.conftest import BACKUPCTL, assert_one_clear_error
from tests.e2e.region import Region

NOW = "2026-11-01T00:00:00Z"


@pytest.fixture
def locked(tmp_path: Path) -> Iterator[Region]:
    """A repository whose lock is held by an apply that was stopped mid-backup and died."""
    region = Region.create(tmp_path / "ws")
    holder = region.start_apply(NOW, {"BACKUPCTL_FAILPOINTS": "before-manifest:sleep"})
    holder.wait_for("failpoint before-manifest reached")
    # SIGKILL would let the next apply take the lock over at once (dead pid on
    # this host); a paused process keeps it the way a live one on another host would.
    holder.signal(signal.SIGSTOP)
    yield region
    holder.kill9()


def nonce(region: Region) -> str:
    holder = read_lock(LocalStorage(region.repository))
    assert holder is not None
    return holder.nonce


def test_unlock_without_the_nonce_shows_it_and_breaks_nothing(locked: Region) -> None:
    result = locked.run("unlock", "-f", locked.config)
    assert_one_clear_error(
        result, "locked by backupctl apply", f"--nonce {nonce(locked)}", "(or --force)"
    )
    wrong = locked.run("unlock", "-f", locked.config, "--nonce", "00000000")
    assert wrong.code == 1
    assert (locked.repository / "lock.json").exists()


def test_unlock_with_the_nonce_breaks_the_lock_and_apply_runs_again(locked: Region) -> None:
    busy = locked.apply(NOW)
    assert_one_clear_error(busy, "is locked by backupctl apply")
    result = locked.run("unlock", "-f", locked.config, "--nonce", nonce(locked))
    assert result.code == 0, result.text
    assert "broke the lock held by backupctl apply" in result.out
    assert not (locked.repository / "lock.json").exists()
    again = locked.apply(NOW)
    assert again.code == 0, again.text
    assert "staging.cleanup: done" in again.out


def test_unlock_on_a_terminal_asks_for_the_nonce(locked: Region) -> None:
    main, terminal = pty.openpty()
    process = subprocess.Popen(
        [BACKUPCTL, "unlock", "-f", str(locked.config)],
        cwd=locked.root,
        stdin=terminal,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    os.write(main, f"{nonce(locked)}\n".encode())
    out, err = process.communicate(timeout=60)
    os.close(main)
    os.close(terminal)
    assert process.returncode == 0, out + err
    assert b"Type the nonce of this lock to break it" in out
    assert not (locked.repository / "lock.json").exists()
