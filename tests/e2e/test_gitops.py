"""The pull-request flow: validate, plan --out, review, apply the saved plan."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema

from tests.e2e.conftest import REPO, Runner, Workspace, assert_one_clear_error


def make_region_dir(workspace: Workspace) -> Path:
    """A folder of two region configurations sharing the sample data."""
    regions = workspace.examples / "regions"
    regions.mkdir()
    base = workspace.config.read_text()
    for name in ("region-east", "region-west"):
        text = base.replace("name: quickstart", f"name: {name}")
        text = text.replace("path: stamp/", "path: ../stamp/").replace(
            "./stamp/bin", "../stamp/bin"
        )
        text = text.replace("keys/demo-backup.cer", "../keys/demo-backup.cer")
        text = text.replace("path: ../.backups", "path: ../../.backups")
        (regions / f"{name}.yaml").write_text(text)
    return regions


def test_pull_request_flow_applies_exactly_the_reviewed_plan(
    workspace: Workspace, run: Runner, tmp_path: Path
) -> None:
    regions = make_region_dir(workspace)
    assert run("validate", "-f", regions).code == 0
    planfile = tmp_path / "plan.bin"
    made = run("plan", "-f", regions, "--out", planfile, "--output", "markdown")
    assert made.code == 0, made.text
    assert "| `region-east` |" in made.out and "| `region-west` |" in made.out
    applied = run("apply", planfile)
    assert applied.code == 0, applied.text
    for name in ("region-east", "region-west"):
        assert f"{name}: backup.run: done" in applied.out
    again = run("plan", "-f", regions, "--detailed-exitcode")
    assert again.code == 0, again.text


def test_a_plan_made_before_someone_elses_apply_is_refused_as_stale(
    workspace: Workspace, run: Runner, tmp_path: Path
) -> None:
    assert run("apply", "-f", workspace.config).code == 0
    later = "2030-01-01T00:00:00Z"
    planfile = tmp_path / "plan.json"
    assert run("plan", "-f", workspace.config, "--now", later, "--out", planfile).code == 0
    assert run("apply", "-f", workspace.config, "--now", later).code == 0
    before = sorted(p.name for p in workspace.backup_dirs())
    refused = run("apply", planfile)
    assert_one_clear_error(
        refused, "the plan is stale", "quickstart changed since it was made", "a backup was added"
    )
    assert sorted(p.name for p in workspace.backup_dirs()) == before


def test_a_saved_plan_made_with_now_runs_at_that_time(
    workspace: Workspace, run: Runner, tmp_path: Path
) -> None:
    for day in ("2030-01-01T00:00:00Z", "2030-01-02T00:00:00Z"):
        assert run("apply", "-f", workspace.config, "--now", day).code == 0
    [first, second] = listed_backups(workspace, run)
    # Ten days on, retention (7 days, minBackups 2) lets the first backup go once
    # the planned one succeeds: a plan made as of that time, not of today.
    when = "2030-01-11T00:00:00Z"
    planfile = tmp_path / "plan.json"
    made = run("plan", "-f", workspace.config, "--now", when, "--out", planfile)
    assert made.code == 0, made.text
    assert "backup.run" in made.out and "backup.prune" in made.out and first["id"] in made.out

    applied = run("apply", planfile)

    assert applied.code == 0, applied.text
    assert "backup.run: done" in applied.out and "backup.prune: done" in applied.out
    backups = listed_backups(workspace, run)
    assert [b["id"] for b in backups[:-1]] == [second["id"]]
    made_now = backups[-1]
    assert made_now["status"] == "Succeeded"
    assert made_now["createdAt"] == when, "the backup carries the plan's time as its creation"
    assert run("plan", "-f", workspace.config, "--now", when, "--detailed-exitcode").code == 0


def listed_backups(workspace: Workspace, run: Runner) -> list[dict[str, str]]:
    listing = run("backups", "list", "-f", workspace.config, "--output", "json")
    assert listing.code == 0, listing.text
    backups: list[dict[str, str]] = json.loads(listing.out)["backups"]
    return backups


def test_an_edited_configuration_makes_a_saved_plan_stale(
    workspace: Workspace, run: Runner, tmp_path: Path
) -> None:
    planfile = tmp_path / "plan.json"
    assert run("plan", "-f", workspace.config, "--out", planfile).code == 0
    workspace.config.write_text(workspace.config.read_text().replace("days: 7", "days: 8"))
    assert_one_clear_error(run("apply", planfile), "stale", "configuration")
    assert not workspace.repository.exists()


def test_saved_plan_holds_no_secret_and_garbage_is_refused(
    workspace: Workspace, run: Runner, tmp_path: Path
) -> None:
    planfile = tmp_path / "plan.json"
    assert run("plan", "-f", workspace.config, "--out", planfile).code == 0
    document = json.loads(planfile.read_text())
    assert document["kind"] == "backupctl-plan" and document["fileVersion"] == 1
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    assert_one_clear_error(run("apply", garbage), str(garbage), "not a backupctl plan file")
    assert_one_clear_error(run("apply", tmp_path / "missing.json"), "does not exist")


def test_a_hand_deleted_backup_shows_up_as_drift(workspace: Workspace, run: Runner) -> None:
    assert run("apply", "-f", workspace.config).code == 0
    assert run("apply", "-f", workspace.config, "--now", "2030-01-01T00:00:00Z").code == 0
    first = workspace.backup_dirs()[0]
    shutil.rmtree(first)
    plan = run("plan", "-f", workspace.config, "--now", "2030-01-01T00:00:00Z")
    assert "catalog.repair" in plan.out
    assert f"backup {first.name} is in the catalog but its data is missing" in plan.out
    assert run("apply", "-f", workspace.config, "--now", "2030-01-01T00:00:00Z").code == 0
    listing = json.loads(run("backups", "list", "-f", workspace.config, "--output", "json").out)
    assert first.name not in [b["id"] for b in listing["backups"]]
    final = run(
        "plan", "-f", workspace.config, "--now", "2030-01-01T00:00:00Z", "--detailed-exitcode"
    )
    assert final.code == 0, final.text


def test_json_plan_validates_against_its_schema_and_is_deterministic(
    workspace: Workspace, run: Runner
) -> None:
    args = ["plan", "-f", workspace.config, "--output", "json", "--now", "2026-12-01T00:00:00Z"]
    first, second = run(*args), run(*args)
    assert first.code == 0 and first.out == second.out
    schema = json.loads((REPO / "schemas" / "plan.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(json.loads(first.out))


def test_target_limits_a_run_to_the_named_configurations(workspace: Workspace, run: Runner) -> None:
    regions = make_region_dir(workspace)
    result = run("apply", "-f", regions, "--target", "region-west")
    assert result.code == 0, result.text
    assert "region-west: backup.run: done" in result.out and "region-east" not in result.out
    assert_one_clear_error(run("plan", "-f", regions, "--target", "nowhere"), "'nowhere'")


def test_validate_prints_github_annotations(workspace: Workspace, run: Runner) -> None:
    workspace.config.write_text(workspace.config.read_text().replace("days: 7", "days: 0"))
    result = run("validate", "-f", workspace.config, "--output", "github")
    assert result.code == 1
    [annotation] = result.out.splitlines()
    assert annotation.startswith("::error file=")
    assert ",line=" in annotation and "spec.retention.days" in annotation


def test_validate_needs_no_secrets_unless_asked(workspace: Workspace, run: Runner) -> None:
    config = workspace.examples / "smb.yaml"
    assert run("validate", "-f", config).code == 0
    assert_one_clear_error(
        run("validate", "-f", config, "--resolve-secrets"), "BACKUP_SMB_PASSWORD", "not set"
    )
