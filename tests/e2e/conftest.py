"""End-to-end tests run the installed ``backupctl`` in a subprocess, as a user would."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BACKUPCTL = str(Path(sys.executable).with_name("backupctl"))


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


Runner = Callable[..., Result]


@dataclass(frozen=True)
class Workspace:
    """A copy of examples/ in a temporary folder, with its own .backups/."""

    root: Path

    @property
    def examples(self) -> Path:
        return self.root / "examples"

    @property
    def config(self) -> Path:
        return self.examples / "quickstart.yaml"

    @property
    def repository(self) -> Path:
        return self.root / ".backups" / "quickstart"

    @property
    def private_key(self) -> Path:
        return self.examples / "keys" / "demo-backup.pem"

    def backup_dirs(self) -> list[Path]:
        return sorted(p for p in (self.repository / "backups").iterdir() if p.is_dir())


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    root = tmp_path / "ws"
    shutil.copytree(REPO / "examples", root / "examples", symlinks=True)
    (root / ".backups").mkdir()
    return Workspace(root)


@pytest.fixture
def run(workspace: Workspace) -> Runner:
    def _run(*args: str | Path, env: dict[str, str] | None = None, timeout: float = 120) -> Result:
        full_env = {**os.environ, **(env or {})}
        proc = subprocess.run(
            [BACKUPCTL, *map(str, args)],
            capture_output=True,
            text=True,
            cwd=workspace.root,
            env=full_env,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    return _run


def assert_one_clear_error(result: Result, *fragments: str) -> None:
    """Exit 1, no traceback, and the message names what it is about."""
    assert result.code == 1, result.text
    assert "Traceback" not in result.text, result.text
    for fragment in fragments:
        assert fragment in result.err, f"{fragment!r} not in stderr: {result.err!r}"
