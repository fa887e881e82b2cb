"""Command-line rules of PRODUCT.md no other test pins: restore targets, `backups show`,
`--debug`, and `python -m reconciler` being `backupctl`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from reconciler.cli.backups import human_size
from reconciler.timeutil import format_time, now_utc
from tests.e2e.conftest import REPO, Result, Runner, Workspace, assert_one_clear_error


def restore_to(run: Runner, workspace: Workspace, target: Path) -> Result:
    return run(
        "restore", "-f", workspace.config, "--backup", "latest",
        "--key", workspace.private_key, "--to", target,
    )  # fmt: skip


def test_restore_to_an_existing_file_says_the_target_must_be_a_folder(
    workspace: Workspace, run: Runner, tmp_path: Path
) -> None:
    assert run("apply", "-f", workspace.config).code == 0
    target = tmp_path / "notes.txt"
    target.write_text("operator notes\n")
    result = restore_to(run, workspace, target)
    assert_one_clear_error(result, f"the restore target {target} must be a folder")
    assert "file exists" not in result.err
    assert len(result.err.splitlines()) == 1, result.err
    assert target.read_text() == "operator notes\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "ws"]


def test_restore_to_a_folder_under_a_file_names_the_file(
    workspace: Workspace, run: Runner, tmp_path: Path
) -> None:
    assert run("apply", "-f", workspace.config).code == 0
    blocker = tmp_path / "notes.txt"
    blocker.write_text("operator notes\n")
    result = restore_to(run, workspace, blocker / "restored")
    assert_one_clear_error(
        result, f"the restore target {blocker / 'restored'} must be a folder, but {blocker}"
    )
    assert blocker.read_text() == "operator notes\n"


# ------------------------------------------------------------------ backups show


def _partial_then_succeeded(workspace: Workspace, run: Runner) -> list[dict[str, object]]:
    """Two backups: the first without the identity folder (PartiallySucceeded)."""
    identity = workspace.examples / "stamp" / "identity"
    shutil.rmtree(identity)
    assert run("apply", "-f", workspace.config).code == 1
    shutil.copytree(REPO / "examples" / "stamp" / "identity", identity)
    # Past the wait after a partial backup (schedule.retryAfterMinutes, 30 by default).
    later = format_time(now_utc() + timedelta(hours=1))
    second = run("apply", "-f", workspace.config, "--now", later)
    assert second.code == 0, second.text
    listing = run("backups", "list", "-f", workspace.config, "--output", "json")
    backups: list[dict[str, object]] = json.loads(listing.out)["backups"]
    assert [b["status"] for b in backups] == ["PartiallySucceeded", "Succeeded"]
    return backups


def test_backups_show_json_is_the_backup_with_its_per_source_results(
    workspace: Workspace, run: Runner
) -> None:
    partial, _latest = _partial_then_succeeded(workspace, run)
    result = run("backups", "show", "-f", workspace.config, str(partial["id"]), "--output", "json")
    assert result.code == 0, result.text
    shown = json.loads(result.out)
    assert shown == partial, "show prints the documented form `backups list` prints"
    assert shown["id"] == partial["id"] and shown["status"] == "PartiallySucceeded"
    sources = {s["name"]: s for s in shown["sources"]}
    assert list(sources) == [
        "deployment-inputs", "root-ca", "identity", "resource-manager", "key-vault",
    ]  # fmt: skip
    assert sources["identity"]["status"] == "Failed"
    assert "identity" in sources["identity"]["error"]
    assert "does not exist" in sources["identity"]["error"]
    for name, source in sources.items():
        if name != "identity":
            assert source["status"] == "Succeeded" and source["error"] is None, source
            assert isinstance(source["sizeBytes"], int) and source["sizeBytes"] > 0, source


def test_backups_show_text_lists_status_and_each_sources_size_or_error(
    workspace: Workspace, run: Runner
) -> None:
    partial, _latest = _partial_then_succeeded(workspace, run)
    result = run("backups", "show", "-f", workspace.config, str(partial["id"]))
    assert result.code == 0, result.text
    lines = result.out.splitlines()
    assert f"id:             {partial['id']}" in lines
    assert "status:         PartiallySucceeded" in lines
    assert f"keyThumbprint:  {partial['keyThumbprint']}" in lines
    sources = {s["name"]: s for s in partial["sources"]}
    for name, source in sources.items():
        [line] = [line for line in lines if line.split()[:1] == [name]]
        assert source["status"] in line.split(), line
        if source["error"] is None:
            assert line.endswith(human_size(source["sizeBytes"])), line
        else:
            assert line.endswith(source["error"]), line
            assert "does not exist" in line


# ------------------------------------------------------------------ --debug


def test_debug_shows_the_traceback_of_an_error_and_without_it_there_is_none(
    workspace: Workspace, run: Runner
) -> None:
    bad = workspace.examples / "bad.yaml"
    bad.write_text(workspace.config.read_text().replace("days: 7", "days: -1"))
    plain = run("plan", "-f", bad)
    assert_one_clear_error(plain, "spec.retention.days")
    debug = run("--debug", "plan", "-f", bad)
    assert debug.code == 1, debug.text
    assert "Traceback (most recent call last):" in debug.err
    assert "reconciler.errors.ConfigError" in debug.err
    assert debug.err.rstrip().splitlines()[-1] == plain.err.rstrip(), "the same message last"
    # Not a configuration error: no repository exists yet.
    missing = run("--debug", "backups", "show", "-f", workspace.config, "latest")
    assert missing.code == 1 and "Traceback (most recent call last):" in missing.err
    assert "reconciler.errors.BackupctlError" in missing.err
    assert_one_clear_error(
        run("backups", "show", "-f", workspace.config, "latest"), "no repository exists"
    )


# ------------------------------------------------------------------ python -m reconciler


def _module(workspace: Workspace, *args: str | Path) -> Result:
    proc = subprocess.run(
        [sys.executable, "-m", "reconciler", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=workspace.root,
        env=dict(os.environ),
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def test_python_dash_m_reconciler_is_the_backupctl_program(
    workspace: Workspace, run: Runner
) -> None:
    bad = workspace.examples / "bad.yaml"
    bad.write_text(workspace.config.read_text().replace("days: 7", "days: -1"))
    for args in (
        ("--version",),
        ("--help",),
        ("restore", "--help"),
        ("validate", "-f", workspace.config),
        ("validate", "-f", bad),
        ("plan", "-f", bad),
        ("nonsense",),
        ("plan", "--detailed-exitcode", "-f", workspace.config),
    ):
        expected = run(*args)
        got = _module(workspace, *args)
        # Click names the program as it was started in usage lines.
        same_err = got.err.replace("python -m reconciler", "backupctl")
        same_out = got.out.replace("python -m reconciler", "backupctl")
        assert (got.code, same_out, same_err) == (expected.code, expected.out, expected.err), args
    assert run("plan", "--detailed-exitcode", "-f", workspace.config).code == 2
    assert run("validate", "-f", bad).code == 1
