"""Planning backup.verify (reconciler.reconcile.policy.verification and plan): pure functions."""

from __future__ import annotations

import json
from datetime import timedelta

from jsonschema import Draft202012Validator

from reconciler.reconcile.actions import VerifyBackups
from reconciler.reconcile.plan import plan_configuration
from reconciler.reconcile.policy.verification import select_verifiable
from reconciler.reconcile.render import render_json, render_text
from reconciler.reconcile.state import Desired
from reconciler.repository.records import BackupStatus
from reconciler.spec.model import Retention, VerificationPolicy
from tests.unit.planning_fixtures import NOW, PLAN_SCHEMA, applied, backup, make_config, observed

WEEKLY = VerificationPolicy(frequency_days=7)
DAY = timedelta(days=1)


def test_a_backup_never_verified_is_due_a_week_after_it_was_made() -> None:
    young = backup(age=6 * DAY)
    exactly = backup(age=7 * DAY)
    due = select_verifiable((young, exactly), WEEKLY, NOW)
    assert [(v.backup.id, v.reason) for v in due] == [
        (exactly.id, "never verified, created 7d ago")
    ]


def test_a_verification_counts_for_frequency_days_and_exactly_then_no_longer() -> None:
    recent = backup(age=30 * DAY, verified_ago=6 * DAY)
    stale = backup(age=30 * DAY, verified_ago=7 * DAY)
    due = select_verifiable((recent, stale), WEEKLY, NOW)
    assert [(v.backup.id, v.reason) for v in due] == [(stale.id, "last verified 7d ago")]


def test_only_backups_holding_data_that_is_not_known_damaged_are_checked() -> None:
    backups = tuple(backup(status, age=10 * DAY) for status in BackupStatus)
    due = select_verifiable(backups, WEEKLY, NOW)
    assert {v.backup.status for v in due} == {
        BackupStatus.SUCCEEDED,
        BackupStatus.PARTIALLY_SUCCEEDED,
    }


def test_without_verification_settings_nothing_is_verified() -> None:
    assert select_verifiable((backup(age=100 * DAY),), None, NOW) == ()


def test_the_plan_verifies_before_it_prunes_and_skips_what_it_prunes() -> None:
    config = make_config(
        verification=VerificationPolicy(frequency_days=5),
        retention=Retention(days=7, min_backups=1),
    )
    doomed = backup(age=9 * DAY)
    checked = backup(age=6 * DAY)
    fresh = backup(age=timedelta(hours=1))
    state = observed(applied(config), doomed, checked, fresh)
    plan = plan_configuration(Desired(config), state, NOW)
    assert [a.name for a in plan.actions] == ["backup.verify", "backup.prune"]
    verify = plan.action(VerifyBackups)
    assert isinstance(verify, VerifyBackups)
    assert [v.backup.id for v in verify.backups] == [checked.id]
    assert verify.reason == "1 backup not verified in the last 5 days"
    assert f"{checked.id}  Succeeded: never verified, created 6d ago" in render_text([plan])


def test_the_json_of_a_verify_action_follows_the_plan_schema() -> None:
    config = make_config(verification=WEEKLY)
    never = backup(age=8 * DAY)
    plan = plan_configuration(
        Desired(config), observed(applied(config), never, backup(age=timedelta(hours=1))), NOW
    )
    document = json.loads(render_json([plan], NOW))
    assert list(Draft202012Validator(PLAN_SCHEMA).iter_errors(document)) == []
    [action] = document["configurations"][0]["actions"]
    assert action["action"] == "backup.verify"
    assert action["backups"] == [
        {
            "id": never.id,
            "createdAt": "2026-11-17T12:00:00Z",
            "status": "Succeeded",
            "lastVerifiedAt": None,
            "reason": "never verified, created 8d ago",
        }
    ]


def test_after_verification_the_next_plan_is_empty() -> None:
    config = make_config(verification=WEEKLY)
    state = observed(
        applied(config),
        backup(age=8 * DAY, verified_ago=timedelta(0)),
        backup(age=timedelta(hours=1)),
    )
    assert plan_configuration(Desired(config), state, NOW).actions == ()
