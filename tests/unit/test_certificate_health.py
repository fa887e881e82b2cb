"""Certificate health in the plan: warn within 30 days of expiry, refuse after, real clock only."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from jsonschema import Draft202012Validator

from reconciler.crypto.certificates import Certificate
from reconciler.crypto.keys import create_key_pair
from reconciler.errors import CryptoError
from reconciler.reconcile.plan import plan_configuration
from reconciler.reconcile.policy.certificate_health import certificate_warnings
from reconciler.reconcile.render import render_json, render_markdown, render_text
from reconciler.reconcile.state import Desired
from tests.unit.planning_fixtures import NOW, PLAN_SCHEMA, applied, backup, make_config, observed


def certificate_valid_for(days: int) -> Certificate:
    """A certificate made at NOW, valid ``days`` days."""
    cert, _key = create_key_pair("ec-p256", "CN=region-west backups", days, NOW)
    return cert


def test_a_certificate_valid_for_long_gives_no_warning_and_its_expiry_is_in_the_json() -> None:
    cert = certificate_valid_for(365)
    config = make_config(cert)
    state = observed(applied(config), backup(age=timedelta(hours=1), key=cert))
    plan = plan_configuration(Desired(config), state, NOW, real_now=NOW)
    assert plan.warnings == ()
    document = json.loads(render_json([plan], NOW))
    assert list(Draft202012Validator(PLAN_SCHEMA).iter_errors(document)) == []
    [entry] = document["configurations"]
    assert entry["certificate"]["notAfter"] == "2027-11-25T12:00:00Z"
    assert entry["certificate"]["thumbprint"] == cert.thumbprint
    assert entry["warnings"] == []


def test_a_certificate_expiring_within_30_days_is_a_warning_in_every_output() -> None:
    cert = certificate_valid_for(29)
    config = make_config(cert)
    state = observed(applied(config), backup(age=timedelta(hours=1), key=cert))
    plan = plan_configuration(Desired(config), state, NOW, real_now=NOW)
    [warning] = plan.warnings
    assert cert.thumbprint in warning
    assert "expires on 2026-12-24T12:00:00Z, within 30 days" in warning
    assert "backupctl keys create" in warning
    assert plan.actions == (), "a warning is not a pending change"
    assert f"! warning: {warning}" in render_text([plan])
    assert f"> **Warning:** {warning}" in render_markdown([plan], NOW)
    document = json.loads(render_json([plan], NOW))
    assert document["configurations"][0]["warnings"] == [warning]
    assert list(Draft202012Validator(PLAN_SCHEMA).iter_errors(document)) == []


def test_thirty_one_days_before_expiry_there_is_no_warning_yet() -> None:
    assert certificate_warnings(certificate_valid_for(31), NOW) == ()


def test_an_expired_certificate_is_refused_in_one_sentence() -> None:
    cert = certificate_valid_for(10)
    config = make_config(cert)
    state = observed(applied(config))
    with pytest.raises(CryptoError) as info:
        plan_configuration(Desired(config), state, NOW, real_now=NOW + timedelta(days=11))
    message = str(info.value)
    assert f"certificate {cert.thumbprint}" in message
    assert "expired on 2026-12-05T12:00:00Z" in message
    assert "backupctl keys create" in message
    assert "\n" not in message


def test_now_moves_schedule_and_retention_but_never_certificate_validity() -> None:
    cert = certificate_valid_for(10)
    config = make_config(cert)
    state = observed(applied(config), backup(age=timedelta(hours=1), key=cert))
    a_year_later = NOW + timedelta(days=365)
    plan = plan_configuration(Desired(config), state, a_year_later, real_now=NOW)
    assert [a.name for a in plan.actions] == ["backup.run"]
    assert len(plan.warnings) == 1, "judged at the real clock: expiring, not expired"
