"""The quickstart as a new user runs it: apply, plan, list, restore."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.e2e.conftest import Runner, Workspace, assert_one_clear_error


def tree_snapshot(root: Path) -> dict[str, tuple[str, int, int, bytes | str | None]]:
    """Every entry under root: kind, mode, mtime_ns, content or link target."""
    entries: dict[str, tuple[str, int, int, bytes | str | None]] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        st = path.lstat()
        if path.is_symlink():
            entries[rel] = ("link", st.st_mode, st.st_mtime_ns, os.readlink(path))
        elif path.is_dir():
            entries[rel] = ("dir", st.st_mode, st.st_mtime_ns, None)
        else:
            entries[rel] = ("file", st.st_mode, st.st_mtime_ns, path.read_bytes())
    return entries


def test_first_apply_makes_a_succeeded_backup_and_a_second_plan_is_empty(
    workspace: Workspace, run: Runner
) -> None:
    first = run("apply", "-f", workspace.config)
    assert first.code == 0, first.text
    assert "repository.init" in first.out and "backup.run: done" in first.out
    listing = json.loads(run("backups", "list", "-f", workspace.config, "--output", "json").out)
    [backup] = listing["backups"]
    assert backup["status"] == "Succeeded"
    assert {s["name"] for s in backup["sources"]} == {
        "deployment-inputs",
        "root-ca",
        "identity",
        "resource-manager",
        "key-vault",
    }
    plan = run("plan", "-f", workspace.config, "--detailed-exitcode")
    assert plan.code == 0, plan.text
    again = run("apply", "-f", workspace.config)
    assert again.code == 0 and "backup.run" not in again.out
    assert len(workspace.backup_dirs()) == 1


def test_plan_detailed_exitcode_is_2_while_changes_are_pending(
    workspace: Workspace, run: Runner
) -> None:
    result = run("plan", "-f", workspace.config, "--detailed-exitcode")
    assert result.code == 2, result.text
    assert "repository.init" in result.out
    assert not workspace.repository.exists(), "plan must not change anything"


def test_restore_reproduces_the_sample_region_byte_for_byte(
    workspace: Workspace, run: Runner, tmp_path: Path
) -> None:
    stamp = workspace.examples / "stamp"
    os.symlink("region.json", stamp / "deployment" / "current-region.json")
    (stamp / "deployment" / "empty-dir").mkdir()
    os.chmod(stamp / "deployment" / "nodes.json", 0o640)
    os.utime(stamp / "deployment" / "region.json", ns=(1, 1_700_000_000_123_456_789))
    assert run("apply", "-f", workspace.config).code == 0
    target = tmp_path / "restored"
    result = run(
        "restore",
        "-f",
        workspace.config,
        "--backup",
        "latest",
        "--key",
        workspace.private_key,
        "--to",
        target,
    )
    assert result.code == 0, result.text
    expected = tree_snapshot(stamp / "deployment")
    del expected["scale-units/su-1.json.tmp"]  # excluded by the configuration
    assert tree_snapshot(target / "deployment-inputs") == expected
    assert tree_snapshot(target / "root-ca") == tree_snapshot(stamp / "ca")
    assert tree_snapshot(target / "identity") == tree_snapshot(stamp / "identity")
    restored_db = target / "resource-manager" / "resource-manager.db"
    with sqlite3.connect(restored_db) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        restored_rows = list(db.iterdump())
    with sqlite3.connect(stamp / "arm" / "resource-manager.db") as db:
        assert restored_rows == list(db.iterdump())
    export = subprocess.run(
        [str(stamp / "bin" / "vaultctl"), "export"], capture_output=True, check=True
    ).stdout
    assert (target / "key-vault" / "key-vault.dump").read_bytes() == export


def test_restore_refuses_a_non_empty_target_without_force(
    workspace: Workspace, run: Runner, tmp_path: Path
) -> None:
    assert run("apply", "-f", workspace.config).code == 0
    target = tmp_path / "restored"
    (target / "root-ca").mkdir(parents=True)
    (target / "root-ca" / "keep.txt").write_text("operator notes")
    args = ["restore", "-f", workspace.config, "--backup", "latest", "--key", workspace.private_key]
    refused = run(*args, "--to", target, "--source", "root-ca")
    assert_one_clear_error(refused, "not empty", "--force")
    assert (target / "root-ca" / "keep.txt").read_text() == "operator notes"
    forced = run(*args, "--to", target, "--source", "root-ca", "--force")
    assert forced.code == 0, forced.text
    assert not (target / "root-ca" / "keep.txt").exists()
    assert (target / "root-ca" / "root-ca.pem").exists()
    assert not (target / "identity").exists(), "--source restores only the named source"


def test_restore_in_place_puts_files_back_where_they_were(
    workspace: Workspace, run: Runner
) -> None:
    assert run("apply", "-f", workspace.config).code == 0
    identity = workspace.examples / "stamp" / "identity"
    before = tree_snapshot(identity)
    (identity / "federation.json").write_text("{}")
    args = ["restore", "-f", workspace.config, "--backup", "latest", "--key", workspace.private_key]
    refused = run(*args, "--in-place", "--source", "identity")
    assert_one_clear_error(refused, "not empty")
    result = run(*args, "--in-place", "--source", "identity", "--force")
    assert result.code == 0, result.text
    after = tree_snapshot(identity)
    assert {k: v[3] for k, v in after.items()} == {k: v[3] for k, v in before.items()}


def test_dump_commands_do_not_see_the_configuration_secrets(
    workspace: Workspace, run: Runner, tmp_path: Path
) -> None:
    env_dump = workspace.examples / "env-dump.sh"
    env_dump.write_text("#!/bin/sh\nenv\n")
    env_dump.chmod(0o755)
    text = workspace.config.read_text()
    text = text.replace("[./stamp/bin/vaultctl, export]", "[./env-dump.sh]")
    text = text.replace(
        "certificate: {file: keys/demo-backup.cer}",
        "certificate: {file: keys/demo-backup.cer}\n    previousKeys:\n"
        "      - {key: {file: keys/demo-backup.pem}, passphrase: {env: OLD_KEY_PASSPHRASE}}",
    )
    workspace.config.write_text(text)
    env = {"OLD_KEY_PASSPHRASE": "hunter2-passphrase", "UNRELATED_SETTING": "visible"}
    assert run("apply", "-f", workspace.config, env=env).code == 0
    target = tmp_path / "restored"
    restored = run(
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
        "key-vault",
    )
    assert restored.code == 0, restored.text
    dumped = (target / "key-vault" / "key-vault.dump").read_text()
    assert "UNRELATED_SETTING=visible" in dumped
    assert "OLD_KEY_PASSPHRASE" not in dumped and "hunter2-passphrase" not in dumped


def test_in_place_sqlite_restore_discards_the_live_databases_stale_wal(
    workspace: Workspace, run: Runner
) -> None:
    db = workspace.examples / "stamp" / "arm" / "resource-manager.db"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        backed_up = list(conn.iterdump())
    os.chmod(db, 0o640)
    assert run("apply", "-f", workspace.config).code == 0
    # A writer dies with changes only in the -wal file: SQLite would replay
    # them onto whatever database file it finds next to that -wal.
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, sqlite3, sys; c = sqlite3.connect(sys.argv[1]);"
            " c.execute('CREATE TABLE after_backup (x)'); c.commit(); os._exit(0)",
            str(db),
        ],
        check=True,
    )
    assert Path(f"{db}-wal").exists()
    result = run(
        "restore",
        "-f",
        workspace.config,
        "--backup",
        "latest",
        "--key",
        workspace.private_key,
        "--in-place",
        "--force",
        "--source",
        "resource-manager",
    )
    assert result.code == 0, result.text
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert list(conn.iterdump()) == backed_up
    assert db.stat().st_mode & 0o777 == 0o640
