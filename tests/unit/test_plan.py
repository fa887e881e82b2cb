"""Planning (reconciler.reconcile.plan) and rendering plans (reconciler.reconcile.render)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from reconciler.crypto.certificates import Certificate, load_certificate
from reconciler.crypto.keys import create_key_pair
from reconciler.reconcile.actions import (
    CleanupStaging,
    InitRepository,
    PruneBackups,
    RepairCatalog,
    RewrapKeys,
    RotateCredentials,
    RotateKey,
    RunBackup,
    SettingChange,
    UpdateSettings,
    VerifyBackups,
)
from reconciler.reconcile.observe import ObservedState
from reconciler.reconcile.plan import ConfigurationPlan, Desired, plan_configuration
from reconciler.reconcile.prepared import Prepared
from reconciler.reconcile.render import render_json, render_markdown, render_text
from reconciler.reconcile.retention import Prunable
from reconciler.reconcile.rewrap import RewrapItem, StayingItem
from reconciler.reconcile.session import desired_state
from reconciler.reconcile.verification import Verifiable
from reconciler.repository.credentials import fingerprint
from reconciler.repository.records import (
    AppliedSettings,
    BackupRecord,
    BackupStatus,
    KeyHistoryEntry,
)
from reconciler.repository.store import Repository
from reconciler.repository.survey import CleanupItem, DriftItem
from reconciler.spec.model import (
    BackupConfiguration,
    CommandSource,
    Encryption,
    LocalLocation,
    Origin,
    Retention,
    Schedule,
    Verification,
)
from reconciler.storage.factory import Credentials
from reconciler.storage.memory import MemoryStorage

ROOT = Path(__file__).resolve().parents[2]
DEMO_CERT_FILE = ROOT / "examples" / "keys" / "demo-backup.cer"
PLAN_SCHEMA = json.loads((ROOT / "schemas" / "plan.schema.json").read_text(encoding="utf-8"))
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
LOCATION = "local folder /srv/backups/region-west"

# PRODUCT.md, "Plan": the order actions appear in (catalog.repair placed as in
# schemas/plan.schema.json, which lists it after staging.cleanup).
ACTION_ORDER = [
    "repository.init",
    "settings.update",
    "credentials.rotate",
    "key.rotate",
    "key.rewrap",
    "backups.migrate",
    "staging.cleanup",
    "catalog.repair",
    "backup.run",
    "backup.prune",
    "backup.verify",
]

DEMO_CERT = load_certificate(DEMO_CERT_FILE)


@pytest.fixture(scope="module")
def other_certificate() -> Certificate:
    cert, _key = create_key_pair("ec-p256", "CN=new backups", 365, datetime.now(UTC))
    return cert


def make_config(**changes: Any) -> BackupConfiguration:
    config = BackupConfiguration(
        name="region-west",
        origin=Origin(Path("/etc/backupctl/region-west.yaml"), 4),
        storage=LocalLocation(Path("/srv/backups")),
        migration_from=None,
        encryption=Encryption(DEMO_CERT_FILE, DEMO_CERT, False, ()),
        schedule=Schedule(enabled=True, frequency_hours=12, retry_after_minutes=30),
        retention=Retention(days=7, min_backups=2),
        trigger="",
        verification=None,
        sources=(CommandSource("key-vault", ("printf", "x"), None, 60, Path("/tmp")),),
        digest="0" * 64,
    )
    return replace(config, **changes)


def applied(config: BackupConfiguration, **changes: Any) -> AppliedSettings:
    """The settings a repository holds after applying ``config``."""
    cert = config.encryption.certificate
    settings = AppliedSettings(
        schedule_enabled=config.schedule.enabled,
        frequency_hours=config.schedule.frequency_hours,
        retry_after_minutes=config.schedule.retry_after_minutes,
        retention_days=config.retention.days,
        min_backups=config.retention.min_backups,
        verification_days=config.verification.frequency_days if config.verification else None,
        active_key=cert.thumbprint,
        key_history=(
            KeyHistoryEntry(
                cert.thumbprint,
                cert.public_key_sha256,
                cert.subject,
                cert.not_after,
                NOW - timedelta(days=30),
                None,
            ),
        ),
        credentials=None,
        last_trigger=config.trigger,
    )
    return replace(settings, **changes)


_counter = 0


def backup(
    status: BackupStatus | str = BackupStatus.SUCCEEDED,
    *,
    age: timedelta,
    key: str = DEMO_CERT.thumbprint,
) -> BackupRecord:
    global _counter
    _counter += 1
    created = NOW - age
    return BackupRecord(
        id=f"{created:%Y%m%dT%H%M%SZ}-{_counter:06x}",
        configuration="region-west",
        status=BackupStatus(status),
        created_at=created,
        started_at=created,
        completed_at=created + timedelta(minutes=1),
        trigger="scheduled",
        key_thumbprint=key,
        sources=(),
    )


def observed(
    settings: AppliedSettings | None,
    backups: tuple[BackupRecord, ...] = (),
    cleanup: tuple[CleanupItem, ...] = (),
    drift: tuple[DriftItem, ...] = (),
) -> ObservedState:
    return replace(
        ObservedState.empty(LOCATION),
        initialized=settings is not None,
        settings=settings,
        backups=backups,
        cleanup=cleanup,
        drift=drift,
    )


def names(plan: ConfigurationPlan) -> list[str]:
    return [a.name for a in plan.actions]


def in_sync(config: BackupConfiguration) -> ObservedState:
    return observed(applied(config), (backup(age=timedelta(hours=1)),))


# ------------------------------------------------------------------ planning


def test_an_empty_repository_plans_init_and_a_first_backup() -> None:
    plan = plan_configuration(Desired(make_config()), ObservedState.empty(LOCATION), NOW)
    assert names(plan) == ["repository.init", "backup.run"]
    assert plan.actions[0].reason == "the repository does not exist yet"
    run = plan.actions[1]
    assert isinstance(run, RunBackup)
    assert run.reason == "no backup exists yet"
    assert run.trigger == "scheduled"
    assert (plan.name, plan.location, plan.now) == ("region-west", LOCATION, NOW)


def test_a_first_apply_with_a_trigger_records_the_backup_as_on_demand() -> None:
    config = make_config(trigger="before patch 2411")
    plan = plan_configuration(Desired(config), ObservedState.empty(LOCATION), NOW)
    assert names(plan) == ["repository.init", "backup.run"]
    run = plan.actions[1]
    assert isinstance(run, RunBackup)
    assert run.trigger == "on-demand"
    assert "before patch 2411" in run.reason


def test_a_repository_in_sync_with_the_configuration_plans_nothing() -> None:
    config = make_config()
    plan = plan_configuration(Desired(config), in_sync(config), NOW)
    assert plan.actions == ()


def test_changed_settings_plan_one_update_listing_each_field_old_and_new() -> None:
    config = make_config(
        schedule=Schedule(enabled=True, frequency_hours=24, retry_after_minutes=30),
        retention=Retention(days=14, min_backups=2),
        verification=Verification(7),
    )
    state = observed(applied(make_config()), (backup(age=timedelta(hours=1)),))
    plan = plan_configuration(Desired(config), state, NOW)
    assert names(plan) == ["settings.update"]
    update = plan.actions[0]
    assert isinstance(update, UpdateSettings)
    assert update.reason == "3 settings changed"
    assert update.changes == (
        SettingChange("spec.schedule.frequencyHours", 12, 24),
        SettingChange("spec.retention.days", 7, 14),
        SettingChange("spec.verification.frequencyDays", None, 7),
    )
    text = render_text([plan])
    assert "schedule.frequencyHours: 12 -> 24" in text
    assert "retention.days: 7 -> 14" in text
    assert "verification.frequencyDays: (none) -> 7" in text


def test_disabling_the_schedule_is_a_settings_change_and_stops_scheduled_backups() -> None:
    config = make_config(schedule=Schedule(enabled=False))
    state = observed(applied(make_config()), (backup(age=timedelta(days=3)),))
    plan = plan_configuration(Desired(config), state, NOW)
    assert names(plan) == ["settings.update"]
    update = plan.actions[0]
    assert isinstance(update, UpdateSettings)
    assert update.changes == (SettingChange("spec.schedule.enabled", True, False),)


def test_a_changed_trigger_runs_a_backup_even_with_the_schedule_disabled() -> None:
    config = make_config(schedule=Schedule(enabled=False), trigger="change CHG0042138")
    settings = applied(config, last_trigger="change CHG0042137")
    plan = plan_configuration(Desired(config), observed(settings), NOW)
    assert names(plan) == ["backup.run"]
    run = plan.actions[0]
    assert isinstance(run, RunBackup)
    assert run.trigger == "on-demand"
    assert run.reason == "trigger changed from 'change CHG0042137' to 'change CHG0042138'"


def test_a_changed_certificate_plans_a_key_rotation_counting_backups_on_the_old_key(
    other_certificate: Certificate,
) -> None:
    old = make_config()
    new = make_config(encryption=Encryption(Path("new.cer"), other_certificate, False, ()))
    backups = (
        backup(age=timedelta(hours=30)),
        backup("Failed", age=timedelta(hours=20)),
        backup(age=timedelta(hours=2)),
    )
    plan = plan_configuration(Desired(new), observed(applied(old), backups), NOW)
    assert names(plan) == ["key.rotate"]
    rotate = plan.actions[0]
    assert isinstance(rotate, RotateKey)
    assert rotate.from_thumbprint == DEMO_CERT.thumbprint
    assert rotate.to_thumbprint == other_certificate.thumbprint
    assert rotate.backups_on_old_key == 3
    assert "CN=new backups" in rotate.reason
    text = render_text([plan])
    assert f"{DEMO_CERT.thumbprint} -> {other_certificate.thumbprint}" in text
    assert "3 existing backups stay on their keys" in text


def test_changed_credentials_plan_a_rotation_that_never_shows_the_secret() -> None:
    config = make_config()
    secret = "hunter2-Very-Secret"
    recorded = fingerprint(b"smb\0CONTOSO\\backupop\0old-password", "CONTOSO\\backupop")
    state = observed(applied(config, credentials=recorded), (backup(age=timedelta(hours=1)),))
    prepared = Prepared(
        config,
        Repository(MemoryStorage(), config.name),
        Credentials("CONTOSO\\backupop", f"smb\0CONTOSO\\backupop\0{secret}".encode()),
    )
    desired = desired_state(prepared, state)
    assert desired.credentials_changed
    plan = plan_configuration(desired, state, NOW)
    assert names(plan) == ["credentials.rotate"]
    assert plan.actions[0].reason == "the storage credentials for CONTOSO\\backupop changed"
    rendered = (
        render_text([plan]) + render_json([plan], NOW) + render_markdown([plan], NOW) + repr(plan)
    )
    assert secret not in rendered
    assert "credentials.rotate" in rendered


def test_unchanged_credentials_plan_no_rotation() -> None:
    config = make_config()
    material = b"smb\0CONTOSO\\backupop\0same-password"
    state = observed(
        applied(config, credentials=fingerprint(material, "CONTOSO\\backupop")),
        (backup(age=timedelta(hours=1)),),
    )
    prepared = Prepared(
        config,
        Repository(MemoryStorage(), config.name),
        Credentials("CONTOSO\\backupop", material),
    )
    plan = plan_configuration(desired_state(prepared, state), state, NOW)
    assert plan.actions == ()


def test_leftovers_of_an_interrupted_run_plan_a_staging_cleanup() -> None:
    config = make_config()
    items = (
        CleanupItem(
            "backups/20261125T060000Z-a1b2c3",
            "backup 20261125T060000Z-a1b2c3 was interrupted before it was committed",
            "20261125T060000Z-a1b2c3",
        ),
        CleanupItem("catalog.json.tmp-0a1b2c3d4e5f", "a temporary object left by a write"),
    )
    state = observed(applied(config), (backup(age=timedelta(hours=1)),), items)
    plan = plan_configuration(Desired(config), state, NOW)
    assert names(plan) == ["staging.cleanup"]
    cleanup = plan.actions[0]
    assert isinstance(cleanup, CleanupStaging)
    assert cleanup.items == items
    assert cleanup.reason == "2 leftovers of an interrupted run"
    text = render_text([plan])
    assert "backups/20261125T060000Z-a1b2c3: backup 20261125T060000Z-a1b2c3 was interrupted" in text


def test_a_catalog_that_disagrees_with_the_storage_plans_a_catalog_repair() -> None:
    config = make_config()
    drift = (
        DriftItem(
            "backup 20261120T000000Z-abcdef is in the catalog but its data is missing",
            "20261120T000000Z-abcdef",
            remove=True,
        ),
    )
    state = observed(applied(config), (backup(age=timedelta(hours=1)),), drift=drift)
    plan = plan_configuration(Desired(config), state, NOW)
    assert names(plan) == ["catalog.repair"]
    repair = plan.actions[0]
    assert isinstance(repair, RepairCatalog)
    assert repair.items == drift
    assert "disagrees with the storage in 1 place" in repair.reason
    assert "its data is missing" in render_text([plan])


def test_a_due_backup_with_old_backups_runs_first_then_prunes_assuming_success() -> None:
    config = make_config()
    old = (backup(age=timedelta(days=10)), backup(age=timedelta(days=9)))
    recent_failed = backup("Failed", age=timedelta(days=1))
    state = observed(applied(config), (*old, recent_failed))
    plan = plan_configuration(Desired(config), state, NOW)
    assert names(plan) == ["backup.run", "backup.prune"]
    prune = plan.actions[1]
    assert isinstance(prune, PruneBackups)
    # With the planned backup counted as Succeeded, only the newest old one is kept.
    assert [p.backup.id for p in prune.backups] == [old[0].id]
    assert prune.reason == "1 backup older than 7 days"


def test_old_backups_without_a_due_backup_are_pruned_down_to_min_backups() -> None:
    config = make_config()
    backups = (
        backup(age=timedelta(days=20)),
        backup(age=timedelta(days=10)),
        backup(age=timedelta(days=9)),
        backup(age=timedelta(hours=1)),
    )
    plan = plan_configuration(Desired(config), observed(applied(config), backups), NOW)
    assert names(plan) == ["backup.prune"]
    prune = plan.actions[0]
    assert isinstance(prune, PruneBackups)
    assert [p.backup.id for p in prune.backups] == [backups[0].id, backups[1].id]
    assert prune.reason == "2 backups older than 7 days"


def test_actions_come_in_the_order_the_product_lists_them(
    other_certificate: Certificate,
) -> None:
    old = make_config()
    new = make_config(
        encryption=Encryption(Path("new.cer"), other_certificate, False, ()),
        retention=Retention(days=5, min_backups=1),
        trigger="drill",
    )
    state = observed(
        applied(old),
        (backup(age=timedelta(days=9)), backup(age=timedelta(days=8))),
        (CleanupItem("backups/x", "left over", "x"),),
        (DriftItem("backup y was deleted by hand", "y", None, True),),
    )
    plan = plan_configuration(
        Desired(new, credentials_changed=True, credentials_principal="u"), state, NOW
    )
    got = names(plan)
    assert got == [
        "settings.update",
        "credentials.rotate",
        "key.rotate",
        "staging.cleanup",
        "catalog.repair",
        "backup.run",
        "backup.prune",
    ]
    assert got == sorted(got, key=ACTION_ORDER.index)


def test_verification_comes_before_prune_so_a_corrupt_backup_is_not_counted_as_kept() -> None:
    """Deliberately unlike PRODUCT.md's list order (see README, "Plan")."""
    config = make_config(verification=Verification(7), retention=Retention(days=14, min_backups=1))
    backups = (
        backup(age=timedelta(days=20)),
        backup(age=timedelta(days=10)),
        backup(age=timedelta(hours=1)),
    )
    plan = plan_configuration(Desired(config), observed(applied(config), backups), NOW)
    assert names(plan) == ["backup.verify", "backup.prune"]


def test_planning_changes_nothing_and_is_repeatable() -> None:
    config = make_config()
    state = observed(applied(config), (backup(age=timedelta(days=10)),))
    first = plan_configuration(Desired(config), state, NOW)
    second = plan_configuration(Desired(config), state, NOW)
    assert first == second


# ------------------------------------------------------------------ rendering


def every_kind_of_action_plan(other: Certificate) -> ConfigurationPlan:
    old = backup(age=timedelta(days=9))
    oldest = backup(age=timedelta(days=400), key="0" * 40)
    return ConfigurationPlan(
        "region-west",
        LOCATION,
        NOW,
        (
            InitRepository("the repository does not exist yet"),
            UpdateSettings(
                "2 settings changed",
                (
                    SettingChange("spec.retention.days", 7, 14),
                    SettingChange("spec.verification.frequencyDays", None, 7),
                ),
            ),
            RotateCredentials("the storage credentials for CONTOSO\\backupop changed"),
            RotateKey("the certificate changed", DEMO_CERT.thumbprint, other.thumbprint, 4),
            CleanupStaging(
                "1 leftover of an interrupted run",
                (CleanupItem("backups/x", "backup x was interrupted", "x"),),
            ),
            RepairCatalog(
                "the catalog disagrees with the storage in 1 place",
                (DriftItem("backup y is in the catalog but its data is missing", "y", None, True),),
            ),
            RunBackup("no Succeeded backup in the last 12 hours", "scheduled"),
            RewrapKeys(
                "1 backup is wrapped to a previous certificate",
                other.thumbprint,
                (RewrapItem(old, DEMO_CERT.thumbprint),),
                (StayingItem(oldest, "no previous key for certificate " + "0" * 40),),
            ),
            PruneBackups(
                "1 backup older than 7 days",
                (Prunable(old, 216.0, "Succeeded backup 9d old, older than 7 days"),),
            ),
            VerifyBackups(
                "1 backup not verified in the last 7 days",
                (Verifiable(old, "never verified"),),
            ),
        ),
        warnings=("the certificate expires in 12 days",),
        certificate=other,
    )


def test_the_text_plan_names_every_action_and_its_reason(
    other_certificate: Certificate,
) -> None:
    plan = every_kind_of_action_plan(other_certificate)
    text = render_text([plan])
    assert text.startswith(f"region-west  ({LOCATION})\n")
    for action in plan.actions:
        line = next(line for line in text.splitlines() if f" {action.name} " in line)
        assert line.endswith(action.reason)
    assert "backups/x: backup x was interrupted" in text
    assert text.endswith("Plan: 10 actions in 1 configuration.\n")


def test_the_text_plan_of_an_in_sync_repository_says_there_are_no_changes() -> None:
    plan = ConfigurationPlan("region-west", LOCATION, NOW, ())
    text = render_text([plan])
    assert "no changes" in text
    assert text.endswith("No changes in 1 configuration.\n")


def test_the_json_plan_with_every_action_kind_follows_the_plan_schema(
    other_certificate: Certificate,
) -> None:
    plan = every_kind_of_action_plan(other_certificate)
    document = json.loads(render_json([plan], NOW))
    Draft202012Validator.check_schema(PLAN_SCHEMA)
    errors = [e.message for e in Draft202012Validator(PLAN_SCHEMA).iter_errors(document)]
    assert errors == []
    assert document["formatVersion"] == 1
    assert document["now"] == "2026-11-25T12:00:00Z"
    [configuration] = document["configurations"]
    assert configuration["name"] == "region-west"
    assert configuration["storage"] == LOCATION
    actions = configuration["actions"]
    assert [a["action"] for a in actions] == [a.name for a in plan.actions]
    by_name = {a["action"]: a for a in actions}
    assert by_name["settings.update"]["changes"][1] == {
        "field": "spec.verification.frequencyDays",
        "old": None,
        "new": 7,
    }
    assert by_name["key.rotate"]["fromThumbprint"] == DEMO_CERT.thumbprint
    assert by_name["key.rotate"]["toThumbprint"] == other_certificate.thumbprint
    assert by_name["backup.run"]["trigger"] == "scheduled"
    assert by_name["staging.cleanup"]["items"] == [
        {"path": "backups/x", "reason": "backup x was interrupted"}
    ]
    assert by_name["catalog.repair"]["items"] == [
        {"path": "backups/y", "reason": "backup y is in the catalog but its data is missing"}
    ]
    assert by_name["key.rewrap"]["backups"][0]["fromThumbprint"] == DEMO_CERT.thumbprint
    assert by_name["backup.verify"]["backups"][0]["reason"] == "never verified"
    assert configuration["warnings"] == ["the certificate expires in 12 days"]
    assert configuration["certificate"]["thumbprint"] == other_certificate.thumbprint
    [pruned] = by_name["backup.prune"]["backups"]
    assert pruned["ageHours"] == 216.0
    assert pruned["createdAt"] == "2026-11-16T12:00:00Z"


def test_the_json_of_a_real_plan_follows_the_plan_schema() -> None:
    config = make_config()
    state = observed(
        applied(config), (backup(age=timedelta(days=10)), backup("Failed", age=timedelta(days=9)))
    )
    plan = plan_configuration(Desired(config), state, NOW)
    document = json.loads(render_json([plan], NOW))
    assert list(Draft202012Validator(PLAN_SCHEMA).iter_errors(document)) == []
    assert [a["action"] for a in document["configurations"][0]["actions"]] == [
        "backup.run",
        "backup.prune",
    ]


def test_the_same_inputs_give_byte_identical_json(other_certificate: Certificate) -> None:
    config = make_config()
    state = observed(applied(config), (backup(age=timedelta(days=10)),))
    first = render_json([plan_configuration(Desired(config), state, NOW)], NOW)
    second = render_json([plan_configuration(Desired(config), state, NOW)], NOW)
    assert first.encode() == second.encode()
    plan = every_kind_of_action_plan(other_certificate)
    assert render_json([plan], NOW) == render_json([plan], NOW)


def test_the_markdown_plan_starts_with_a_summary_table(
    other_certificate: Certificate,
) -> None:
    busy = every_kind_of_action_plan(other_certificate)
    quiet = ConfigurationPlan("region-east", "local folder /srv/b|x", NOW, ())
    markdown = render_markdown([busy, quiet], NOW)
    lines = markdown.splitlines()
    header = lines.index("| configuration | storage | actions |")
    assert lines[header + 1] == "| --- | --- | --- |"
    busy_row = lines[header + 2]
    assert busy_row.startswith("| `region-west` |")
    assert all(a.name in busy_row for a in busy.actions)
    assert lines[header + 3] == "| `region-east` | local folder /srv/b\\|x | no changes |"
    assert "### `region-west`" in markdown
    assert "### `region-east`" not in markdown
    assert markdown.rstrip().endswith("**10 actions** in 2 configuration(s).")
