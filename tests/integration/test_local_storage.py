"""Local storage specifics the conformance suite cannot express."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from reconciler.errors import UnreachableError
from reconciler.storage.local import LocalStorage


def test_a_vanished_repository_folder_is_not_recreated_by_a_write(tmp_path: Path) -> None:
    """An unmounted share leaves its mount point behind: never fill the local disk."""
    mount_point = tmp_path / "mnt"
    mount_point.mkdir()
    storage = LocalStorage(mount_point / "region-west")
    storage.ensure_root()
    storage.write_atomic("backups/b1/manifest.json", b"{}")
    shutil.rmtree(mount_point / "region-west")
    with pytest.raises(UnreachableError, match="no longer exists"):
        storage.write_atomic("backups/b2/manifest.json", b"{}")
    with pytest.raises(UnreachableError, match="no longer exists"):
        storage.create_exclusive("lock.json", b"{}")
    assert list(mount_point.iterdir()) == []


def test_the_location_itself_must_exist(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "not-mounted" / "region-west")
    with pytest.raises(UnreachableError, match="create or mount it first"):
        storage.ensure_root()
    assert not (tmp_path / "not-mounted").exists()
