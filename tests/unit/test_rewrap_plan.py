"""Planning key.rewrap (reconciler.reconcile.rewrap and plan): pure functions, no storage."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from jsonschema import Draft202012Validator

from reconciler.crypto.certificates import Certificate
from reconciler.crypto.keys import create_key_pair
from reconciler.reconcile.actions import RewrapKeys
from reconciler.reconcile.plan import ConfigurationPlan, Desired, plan_configuration
from reconciler.reconcile.render import render_json, render_markdown, render_text
from reconciler.reconcile.rewrap import select_rewrap
from reconciler.repository.records import BackupStatus
from reconciler.repository.survey import CleanupItem, DriftItem
from tests.unit.planning_fixtures import (
    DEMO_CERT,
    NOW,
    PLAN_SCHEMA,
    applied,
    backup,
    make_config,
    observed,
)


def new_certificate(subject: str) -> Certificate:
    cert, _key = create_key_pair("ec-p256", subject, 365, datetime.now(UTC))
    return cert


@pytest.fixture(scope="module")
def current() -> Certificate:
    return new_certificate("CN=backups 2027")


@pytest.fixture(scope="module")
def retired() -> Certificate:
    """A certificate used between DEMO_CERT and ``current``; its key is not offered."""
    return new_certificate("CN=backups 2026 interim")


def fingerprints(*certs: Certificate) -> dict[str, str]:
    return {c.thumbprint: c.public_key_sha256 for c in certs}


def rewrap_action(plan: ConfigurationPlan) -> RewrapKeys:
    action = plan.action(RewrapKeys)
    assert isinstance(action, RewrapKeys), plan.actions
    return action


# ------------------------------------------------------------------ select_rewrap


def test_backups_whose_key_is_offered_are_rewrapped_and_the_others_stay(
    current: Certificate, retired: Certificate
) -> None:
    old = backup(age=timedelta(days=5), key=DEMO_CERT)
    interim = backup(age=timedelta(days=3), key=retired)
    fresh = backup(age=timedelta(days=1), key=current)
    rewrap, staying = select_rewrap(
        (old, interim, fresh),
        current,
        frozenset({DEMO_CERT.public_key_sha256}),
        fingerprints(DEMO_CERT, retired, current),
    )
    assert [(r.backup.id, r.from_thumbprint) for r in rewrap] == [(old.id, DEMO_CERT.thumbprint)]
    assert [s.backup.id for s in staying] == [interim.id]
    assert retired.thumbprint in staying[0].reason
    assert "spec.encryption.previousKeys" in staying[0].reason


def test_keys_are_matched_by_public_key_not_by_which_file_or_certificate_they_came_with(
    current: Certificate,
) -> None:
    # A renewed certificate keeps its public key: its backups need no rewrap.
    renewed_thumbprint = "0" * 40
    old = backup(age=timedelta(days=5), key=DEMO_CERT)
    renewal = replace(backup(age=timedelta(days=2), key=current), key_thumbprint=renewed_thumbprint)
    rewrap, staying = select_rewrap(
        (old, renewal),
        current,
        frozenset({DEMO_CERT.public_key_sha256}),
        {**fingerprints(DEMO_CERT, current), renewed_thumbprint: current.public_key_sha256},
    )
    assert [r.backup.id for r in rewrap] == [old.id]
    assert staying == ()


def test_a_backup_on_a_certificate_of_unknown_public_key_stays(current: Certificate) -> None:
    stranger = backup(age=timedelta(days=5), key=DEMO_CERT)
    rewrap, staying = select_rewrap(
        (stranger,), current, frozenset({DEMO_CERT.public_key_sha256}), {}
    )
    assert rewrap == ()
    assert [s.backup.id for s in staying] == [stranger.id]


def test_running_backups_and_backups_being_repaired_are_left_for_a_later_apply(
    current: Certificate,
) -> None:
    running = backup(BackupStatus.RUNNING, age=timedelta(minutes=5), key=DEMO_CERT)
    repaired = backup(age=timedelta(days=1), key=DEMO_CERT)
    rewrap, staying = select_rewrap(
        (running, repaired),
        current,
        frozenset({DEMO_CERT.public_key_sha256}),
        fingerprints(DEMO_CERT),
        frozenset({repaired.id}),
    )
    assert (rewrap, staying) == ((), ())


# ------------------------------------------------------------------ in the plan


def test_rewrap_existing_plans_key_rewrap_after_key_rotate_and_before_cleanup(
    current: Certificate, retired: Certificate
) -> None:
    before = make_config(DEMO_CERT)
    config = make_config(current, rewrap=True)
    old = backup(age=timedelta(days=3), key=DEMO_CERT)
    interim = backup(age=timedelta(days=2), key=retired)
    state = observed(
        applied(before, retired),
        old,
        interim,
        backup(age=timedelta(hours=1), key=DEMO_CERT),
        cleanup=(CleanupItem("backups/x", "interrupted", "x"),),
    )
    desired = Desired(
        config,
        previous_keys=frozenset({DEMO_CERT.public_key_sha256}),
        key_fingerprints=fingerprints(DEMO_CERT, retired),
    )
    plan = plan_configuration(desired, state, NOW)
    names = [a.name for a in plan.actions]
    assert names.index("key.rotate") + 1 == names.index("key.rewrap")
    assert names.index("key.rewrap") < names.index("staging.cleanup")
    action = rewrap_action(plan)
    assert action.to_thumbprint == current.thumbprint
    assert len(action.backups) == 2
    assert [s.backup.id for s in action.staying] == [interim.id]
    assert action.reason.startswith("2 backups are wrapped to an earlier certificate")


def test_the_json_and_text_of_a_rewrap_list_what_moves_and_what_stays(
    current: Certificate, retired: Certificate
) -> None:
    config = make_config(current, rewrap=True)
    old = backup(age=timedelta(days=3), key=DEMO_CERT)
    interim = backup(age=timedelta(days=2), key=retired)
    state = observed(applied(config, DEMO_CERT, retired), old, interim)
    desired = Desired(
        config,
        previous_keys=frozenset({DEMO_CERT.public_key_sha256}),
        key_fingerprints=fingerprints(DEMO_CERT, retired),
    )
    plan = plan_configuration(desired, state, NOW)
    document = json.loads(render_json([plan], NOW))
    assert list(Draft202012Validator(PLAN_SCHEMA).iter_errors(document)) == []
    [entry] = [a for a in document["configurations"][0]["actions"] if a["action"] == "key.rewrap"]
    assert entry["toThumbprint"] == current.thumbprint
    assert [(b["id"], b["fromThumbprint"]) for b in entry["backups"]] == [
        (old.id, DEMO_CERT.thumbprint)
    ]
    assert [(s["id"], s["thumbprint"]) for s in entry["staying"]] == [
        (interim.id, retired.thumbprint)
    ]
    text = render_text([plan])
    assert f"{old.id}: {DEMO_CERT.thumbprint} -> {current.thumbprint}" in text
    assert f"{interim.id}: stays on {retired.thumbprint}" in text
    assert f"{interim.id}: stays on {retired.thumbprint}" in render_markdown([plan], NOW)


def test_without_rewrap_existing_no_backup_is_rewrapped_even_with_previous_keys(
    current: Certificate,
) -> None:
    config = make_config(current, rewrap=False)
    state = observed(applied(config, DEMO_CERT), backup(age=timedelta(hours=2), key=DEMO_CERT))
    desired = Desired(
        config,
        previous_keys=frozenset({DEMO_CERT.public_key_sha256}),
        key_fingerprints=fingerprints(DEMO_CERT),
    )
    plan = plan_configuration(desired, state, NOW)
    assert plan.actions == ()
    assert plan.warnings == ()


def test_when_no_previous_key_fits_the_plan_has_no_action_but_warns(
    current: Certificate, retired: Certificate
) -> None:
    config = make_config(current, rewrap=True)
    state = observed(
        applied(config, DEMO_CERT, retired),
        backup(age=timedelta(days=2), key=retired),
        backup(age=timedelta(hours=2), key=current),
    )
    desired = Desired(
        config,
        previous_keys=frozenset({DEMO_CERT.public_key_sha256}),
        key_fingerprints=fingerprints(DEMO_CERT, retired),
    )
    plan = plan_configuration(desired, state, NOW)
    assert plan.actions == (), "a plan that never empties would break --detailed-exitcode"
    [warning] = plan.warnings
    assert warning.startswith("1 backup stays on its key")
    assert retired.thumbprint in warning
    assert "warning: 1 backup" in render_text([plan])


def test_once_every_backup_is_on_the_current_certificate_rewrap_plans_nothing(
    current: Certificate,
) -> None:
    config = make_config(current, rewrap=True)
    state = observed(
        applied(config, DEMO_CERT),
        backup(age=timedelta(days=2), key=current),
        backup(age=timedelta(hours=2), key=current),
    )
    desired = Desired(
        config,
        previous_keys=frozenset({DEMO_CERT.public_key_sha256}),
        key_fingerprints=fingerprints(DEMO_CERT),
    )
    plan = plan_configuration(desired, state, NOW)
    assert (plan.actions, plan.warnings) == ((), ())


def test_a_backup_the_catalog_repair_reenters_is_rewrapped_by_the_next_apply(
    current: Certificate,
) -> None:
    config = make_config(current, rewrap=True)
    reentered = backup(age=timedelta(days=1), key=DEMO_CERT)
    state = observed(
        applied(config, DEMO_CERT),
        reentered,
        backup(age=timedelta(hours=2), key=current),
        drift=(DriftItem("missing from the catalog", reentered.id, add=reentered),),
    )
    desired = Desired(
        config,
        previous_keys=frozenset({DEMO_CERT.public_key_sha256}),
        key_fingerprints=fingerprints(DEMO_CERT),
    )
    plan = plan_configuration(desired, state, NOW)
    assert plan.action(RewrapKeys) is None
    assert [a.name for a in plan.actions] == ["catalog.repair"]
