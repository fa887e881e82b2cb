"""Relocation with spec.migration.from: verifiable, resumable, idempotent copies."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from tests.e2e.conftest import Runner, Workspace, assert_one_clear_error

DAY1 = "2026-11-20T00:00:00Z"
DAY2 = "2026-11-21T00:00:00Z"
DAY3 = "2026-11-22T00:00:00Z"


def fingerprint_tree(root: Path) -> dict[str, tuple[str, int]]:
    """Content hash and mtime of every file: proves a folder was not modified."""
    return {
        str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def relocate(workspace: Workspace, old: Path, new: Path) -> None:
    text = workspace.config.read_text().replace("path: ../.backups", f"path: {new}")
    text = text.replace(
        "  encryption:", f"  migration:\n    from: {{local: {{path: {old}}}}}\n  encryption:", 1
    )
    workspace.config.write_text(text)


def listed(run: Runner, workspace: Workspace) -> list[dict[str, object]]:
    out = run("backups", "list", "-f", workspace.config, "--output", "json").out
    backups: list[dict[str, object]] = json.loads(out)["backups"]
    return backups


def test_relocation_copies_every_backup_verifiably_and_leaves_the_old_location_alone(
    workspace: Workspace, run: Runner, tmp_path: Path
) -> None:
    old = workspace.root / ".backups"
    assert run("apply", "-f", workspace.config, "--now", DAY1).code == 0
    assert run("apply", "-f", workspace.config, "--now", DAY2).code == 0
    before = listed(run, workspace)
    untouched = fingerprint_tree(old)
    new = tmp_path / "new-location"
    new.mkdir()
    relocate(workspace, old, new)
    plan = run("plan", "-f", workspace.config, "--now", DAY2)
    assert "repository.init" in plan.out and "backups.migrate" in plan.out
    assert "backup.run" not in plan.out, "the migrated backup of DAY2 is recent enough"
    result = run("apply", "-f", workspace.config, "--now", DAY2)
    assert result.code == 0, result.text
    assert "every object verified" in result.out
    after = listed(run, workspace)
    keep = ("id", "createdAt", "keyThumbprint", "status", "sizeBytes")
    assert [{k: b[k] for k in keep} for b in after] == [{k: b[k] for k in keep} for b in before]
    assert fingerprint_tree(old) == untouched
    second = run("apply", "-f", workspace.config, "--now", DAY2)
    assert second.code == 0 and "backups.migrate" not in second.out
    target = tmp_path / "restored"
    restored = run(
        "restore",
        "-f",
        workspace.config,
        "--backup",
        str(before[0]["id"]),
        "--key",
        workspace.private_key,
        "--to",
        target,
    )
    assert restored.code == 0, restored.text


def test_an_interrupted_migration_resumes_and_copies_nothing_twice(
    workspace: Workspace, run: Runner, tmp_path: Path
) -> None:
    old = workspace.root / ".backups"
    for day in (DAY1, DAY2):
        assert run("apply", "-f", workspace.config, "--now", day).code == 0
    new = tmp_path / "new"
    new.mkdir()
    relocate(workspace, old, new)
    killed = run(
        "apply",
        "-f",
        workspace.config,
        "--now",
        DAY2,
        env={"BACKUPCTL_FAILPOINTS": "migrate-object#7:exit"},
    )
    assert killed.code == 137
    assert len(listed(run, workspace)) == 1, "only the first backup was committed"
    resumed = run("apply", "-f", workspace.config, "--now", DAY2)
    assert resumed.code == 0, resumed.text
    assert "staging.cleanup" in resumed.out and "copy 1 backup" in resumed.out
    assert len(listed(run, workspace)) == 2, resumed.text
    assert run("plan", "-f", workspace.config, "--now", DAY2, "--detailed-exitcode").code == 0


def test_a_damaged_object_at_the_old_location_is_not_copied(
    workspace: Workspace, run: Runner, tmp_path: Path
) -> None:
    old = workspace.root / ".backups"
    assert run("apply", "-f", workspace.config, "--now", DAY1).code == 0
    [backup] = workspace.backup_dirs()
    obj = next(p for p in backup.iterdir() if p.name.endswith(".chunks"))
    data = bytearray(obj.read_bytes())
    data[len(data) // 2] ^= 0xFF
    obj.write_bytes(bytes(data))
    new = tmp_path / "new"
    new.mkdir()
    relocate(workspace, old, new)
    result = run("apply", "-f", workspace.config, "--now", DAY1)
    assert_one_clear_error(result, obj.name, "is damaged")
    assert not (new / "quickstart" / "backups" / backup.name / "manifest.json").exists()


def test_backups_retention_would_prune_are_not_copied(
    workspace: Workspace, run: Runner, tmp_path: Path
) -> None:
    old = workspace.root / ".backups"
    for day in (DAY1, DAY2, DAY3):
        assert run("apply", "-f", workspace.config, "--now", day).code == 0
    new = tmp_path / "new"
    new.mkdir()
    relocate(workspace, old, new)
    text = (
        workspace.config.read_text()
        .replace("days: 7", "days: 1")
        .replace("minBackups: 2", "minBackups: 1")
    )
    workspace.config.write_text(text)
    plan = run("plan", "-f", workspace.config, "--now", DAY3, "--output", "json")
    [migrate] = [
        a
        for a in json.loads(plan.out)["configurations"][0]["actions"]
        if a["action"] == "backups.migrate"
    ]
    assert len(migrate["backups"]) == 2
    assert [s["reason"] for s in migrate["skipped"]] == ["retention (1 days) would prune it"]
    assert os.path.isdir(old / "quickstart")
