"""Saved plans: what makes them stale, and what they never contain."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from reconciler.errors import PlanError
from reconciler.reconcile.plan import plan_configuration
from reconciler.reconcile.savedplan import (
    describe_changes,
    observed_summary,
    read_plan_file,
    stale_plan_reason,
    write_plan_file,
)
from reconciler.reconcile.state import Desired, ObservedState
from reconciler.spec import load_configurations
from reconciler.storage.factory import Credentials

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def test_a_changed_secret_makes_the_saved_plan_stale_and_the_file_holds_no_secret(
    tmp_path: Path,
) -> None:
    [config] = load_configurations(REPO / "examples" / "quickstart.yaml")
    observed = ObservedState.empty("local folder x")
    plan = plan_configuration(Desired(config), observed, NOW)
    old = Credentials("backupop", b"smb\0backupop\0correct horse battery staple")
    path = tmp_path / "plan.json"
    write_plan_file(path, Path("examples/quickstart.yaml"), NOW, [(plan, config, observed, old)])
    assert "correct horse" not in path.read_text()
    saved = read_plan_file(path)
    [inputs] = saved.inputs
    actions = saved.actions_of(config.name)
    assert stale_plan_reason(inputs, actions, config, old, observed, plan) is None
    new = Credentials("backupop", b"smb\0backupop\0a new password")
    assert stale_plan_reason(inputs, actions, config, new, observed, plan) == (
        "its storage credentials changed"
    )
    assert stale_plan_reason(inputs, actions, config, None, observed, plan) == (
        "its storage credentials changed"
    )


def test_different_actions_make_the_saved_plan_stale(tmp_path: Path) -> None:
    [config] = load_configurations(REPO / "examples" / "quickstart.yaml")
    observed = ObservedState.empty("local folder x")
    plan = plan_configuration(Desired(config), observed, NOW)
    path = tmp_path / "plan.json"
    write_plan_file(path, Path("q.yaml"), NOW, [(plan, config, observed, None)])
    saved = read_plan_file(path)
    actions = saved.actions_of(config.name)
    edited = [dict(a, reason="something else") for a in actions]
    assert stale_plan_reason(saved.inputs[0], edited, config, None, observed, plan) == (
        "its actions would now differ"
    )


def test_describe_changes_names_added_removed_and_changed_backups() -> None:
    old = {"initialized": True, "settings": "a", "backups": [["b1", "Succeeded"], ["b2", "Failed"]]}
    new = {
        "initialized": True,
        "settings": "b",
        "backups": [["b2", "Corrupt"], ["b3", "Succeeded"]],
    }
    text = describe_changes(old, new)
    assert "a backup was added (b3)" in text
    assert "a backup was removed (b1)" in text
    assert "a backup changed status (b2)" in text
    assert "the applied settings changed" in text


def test_observed_summary_of_an_empty_repository() -> None:
    summary = observed_summary(ObservedState.empty("x"))
    assert summary == {
        "initialized": False,
        "settings": None,
        "backups": [],
        "cleanup": [],
        "drift": [],
    }


@pytest.mark.parametrize(
    "content, fragment",
    [
        ("not json", "not a backupctl plan file"),
        (json.dumps({"kind": "other"}), "not a backupctl plan file"),
        (json.dumps({"kind": "backupctl-plan", "fileVersion": 9}), "version 9"),
        (json.dumps({"kind": "backupctl-plan", "fileVersion": 1}), "damaged plan file"),
    ],
)
def test_unusable_plan_files_are_refused_with_a_sentence(
    tmp_path: Path, content: str, fragment: str
) -> None:
    path = tmp_path / "plan.json"
    path.write_text(content)
    with pytest.raises(PlanError, match=fragment):
        read_plan_file(path)
