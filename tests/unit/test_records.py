"""The JSON forms of what a repository stores (reconciler.repository.records)."""

from __future__ import annotations

import json
import re
from dataclasses import FrozenInstanceError, fields, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from reconciler.crypto.certificates import load_certificate
from reconciler.crypto.envelope import new_data_key, wrap_data_key
from reconciler.errors import IntegrityError
from reconciler.repository.layout import format_backup_id, manifest_key, parse_backup_id
from reconciler.repository.records import (
    AppliedSettings,
    BackupRecord,
    BackupStatus,
    CredentialFingerprint,
    KeyHistoryEntry,
    SourceResult,
    SourceStatus,
    StoredObject,
    dumps,
    loads,
    newest_succeeded,
    record_from_json,
    record_to_json,
    settings_from_json,
    settings_to_json,
)
from reconciler.repository.store import Repository
from reconciler.storage.memory import MemoryStorage
from tests.plant import plant_manifest

DEMO_CERT = load_certificate(
    Path(__file__).resolve().parents[2] / "examples" / "keys" / "demo-backup.cer"
)
CREATED = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
WHERE = "backups/20261125T120000Z-3f9a1c/manifest.json in repository region-west"


def full_record() -> BackupRecord:
    return BackupRecord(
        id="20261125T120000Z-3f9a1c",
        configuration="region-west",
        status=BackupStatus.PARTIALLY_SUCCEEDED,
        created_at=CREATED,
        started_at=CREATED + timedelta(seconds=1),
        completed_at=CREATED + timedelta(minutes=3, seconds=7),
        trigger="on-demand",
        key_thumbprint=DEMO_CERT.thumbprint,
        sources=(
            SourceResult(
                name="deployment-inputs",
                kind="files",
                status=SourceStatus.SUCCEEDED,
                size_bytes=4096,
                content_bytes=20480,
                items=12,
                error=None,
                object=StoredObject("deployment-inputs.tar.zst.enc", 4096, "ab" * 32),
            ),
            SourceResult(
                name="key-vault",
                kind="command",
                status=SourceStatus.FAILED,
                size_bytes=0,
                content_bytes=0,
                items=0,
                error="command vaultctl export exited with status 3",
                object=None,
            ),
        ),
        wrapped_key=wrap_data_key(new_data_key(), DEMO_CERT),
        verified_at=CREATED + timedelta(days=1),
        verification_error=None,
    )


def full_settings() -> AppliedSettings:
    return AppliedSettings(
        schedule_enabled=False,
        frequency_hours=24,
        retry_after_minutes=45,
        retention_days=30,
        min_backups=3,
        verification_days=7,
        active_key=DEMO_CERT.thumbprint,
        key_history=(
            KeyHistoryEntry(
                "0" * 40,
                "1" * 64,
                "CN=old backups",
                CREATED + timedelta(days=10),
                CREATED - timedelta(days=400),
                CREATED - timedelta(days=2),
            ),
            KeyHistoryEntry(
                DEMO_CERT.thumbprint,
                DEMO_CERT.public_key_sha256,
                DEMO_CERT.subject,
                DEMO_CERT.not_after.replace(microsecond=0),
                CREATED - timedelta(days=2),
                None,
            ),
        ),
        credentials=CredentialFingerprint(
            "scrypt-n32768-r8-p1", "c2FsdA==", "aGFzaA==", "CONTOSO\\backupop"
        ),
        last_trigger="change CHG0042137",
    )


def through_json(data: Any) -> Any:
    return loads(dumps(data), "test object")


def test_a_backup_record_survives_a_json_round_trip() -> None:
    record = full_record()
    assert record_from_json(through_json(record_to_json(record)), WHERE) == record


def test_a_parsed_record_is_built_as_its_constructors_build_it() -> None:
    """record_from_json fills the frozen dataclasses without their __init__:
    every field must be there, and nothing else (a field added to a class
    and not to the parser fails here)."""
    record = record_from_json(through_json(record_to_json(full_record())), WHERE)
    for made in (record, *record.sources, *(s.object for s in record.sources if s.object)):
        assert list(vars(made)) == [f.name for f in fields(made)]
        assert made == replace(made)  # replace() goes through __init__
        assert hash(made) == hash(replace(made))
    with pytest.raises(FrozenInstanceError):
        record.status = BackupStatus.CORRUPT  # type: ignore[misc]


def test_a_record_in_json_uses_the_documented_names_and_utc_times() -> None:
    data = record_to_json(full_record())
    assert data["status"] == "PartiallySucceeded"
    assert data["createdAt"] == "2026-11-25T12:00:00Z"
    assert data["completedAt"] == "2026-11-25T12:03:07Z"
    assert data["keyThumbprint"] == DEMO_CERT.thumbprint
    assert data["sources"][1]["error"] == "command vaultctl export exited with status 3"
    assert data["sources"][1]["object"] is None
    assert data["wrappedKey"]["thumbprint"] == DEMO_CERT.thumbprint


def test_a_catalog_summary_leaves_the_wrapped_key_out() -> None:
    record = full_record()
    data = record_to_json(record.summary())
    assert "wrappedKey" not in data
    assert record_from_json(through_json(data), WHERE) == record.summary()


def test_a_record_of_a_running_backup_round_trips_without_completion_time() -> None:
    running = BackupRecord(
        "20261125T120000Z-000001",
        "region-west",
        BackupStatus.RUNNING,
        CREATED,
        CREATED,
        None,
        "scheduled",
        DEMO_CERT.thumbprint,
        (),
    )
    data = through_json(record_to_json(running))
    assert data["completedAt"] is None
    back = record_from_json(data, WHERE)
    assert back == running
    assert back.duration_seconds is None


def test_record_size_and_duration_are_derived_from_the_sources_and_times() -> None:
    record = full_record()
    assert record.size_bytes == 4096
    assert record.duration_seconds == 186.0


def test_applied_settings_survive_a_json_round_trip() -> None:
    settings = full_settings()
    assert settings_from_json(through_json(settings_to_json(settings)), "settings.json") == settings


def test_applied_settings_without_credentials_or_verification_round_trip() -> None:
    settings = full_settings()
    bare = AppliedSettings(
        **{**settings.__dict__, "credentials": None, "verification_days": None, "key_history": ()}
    )
    assert settings_from_json(through_json(settings_to_json(bare)), "settings.json") == bare


def test_stored_json_is_deterministic_bytes() -> None:
    settings = full_settings()
    first = dumps(settings_to_json(settings))
    second = dumps(settings_to_json(settings))
    assert first == second
    assert first.endswith(b"\n")
    assert list(json.loads(first)) == sorted(json.loads(first))


# ------------------------------------------------------------------ damage


def test_bytes_that_are_not_json_raise_an_integrity_error_naming_where() -> None:
    with pytest.raises(IntegrityError) as caught:
        loads(b'{"id": "20261125T', WHERE)
    assert str(caught.value) == f"{WHERE} is damaged: it is not valid JSON"


def test_bytes_that_are_not_utf8_raise_an_integrity_error_naming_where() -> None:
    with pytest.raises(IntegrityError, match="^" + re.escape(f"{WHERE} is damaged")):
        loads(b"\xff\xfe\x00{", WHERE)


def test_a_record_missing_a_field_names_the_field_and_where() -> None:
    data = record_to_json(full_record())
    del data["createdAt"]
    with pytest.raises(IntegrityError) as caught:
        record_from_json(data, WHERE)
    assert str(caught.value) == f"{WHERE} is damaged: the field 'createdAt' is missing"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("status", "Done"),
        ("createdAt", "yesterday"),
        ("sources", 3),
        ("completedAt", "2026-13-01T00:00:00Z"),
    ],
)
def test_a_record_with_an_invalid_value_is_reported_as_damaged(field: str, value: Any) -> None:
    data = record_to_json(full_record())
    data[field] = value
    with pytest.raises(IntegrityError) as caught:
        record_from_json(data, WHERE)
    assert str(caught.value) == f"{WHERE} is damaged: a field has an invalid value"


@pytest.mark.parametrize("data", [None, [], "a string", 42])
def test_json_that_is_not_an_object_is_reported_as_a_damaged_record(data: Any) -> None:
    with pytest.raises(IntegrityError, match="^" + re.escape(f"{WHERE} is damaged")):
        record_from_json(data, WHERE)


def test_a_damaged_source_entry_is_reported_as_a_damaged_record() -> None:
    data = record_to_json(full_record())
    data["sources"][0]["status"] = "Maybe"
    with pytest.raises(IntegrityError, match="^" + re.escape(f"{WHERE} is damaged")):
        record_from_json(data, WHERE)


def test_a_damaged_wrapped_key_names_the_manifest_it_is_in() -> None:
    data = record_to_json(full_record())
    data["wrappedKey"]["scheme"] = "rot13"
    with pytest.raises(IntegrityError) as caught:
        record_from_json(data, WHERE)
    assert WHERE in str(caught.value)


def test_settings_missing_a_field_name_the_field_and_where() -> None:
    data = settings_to_json(full_settings())
    del data["activeKey"]
    with pytest.raises(IntegrityError) as caught:
        settings_from_json(data, "settings.json in repository region-west")
    assert str(caught.value) == (
        "settings.json in repository region-west is damaged: the field 'activeKey' is missing"
    )


def test_settings_with_an_invalid_value_are_reported_as_damaged() -> None:
    data = settings_to_json(full_settings())
    data["schedule"]["frequencyHours"] = "twelve"
    with pytest.raises(IntegrityError, match=r"^settings\.json is damaged: a field has an invalid"):
        settings_from_json(data, "settings.json")


def test_a_damaged_manifest_read_from_storage_names_the_object_and_repository() -> None:
    storage = MemoryStorage("west")
    repository = Repository(storage, "region-west")
    record = full_record()
    plant_manifest(repository, record)
    assert repository.read_manifest(record.id) == record
    storage.write_atomic(manifest_key(record.id), b'{"id": ')
    with pytest.raises(IntegrityError) as caught:
        repository.read_manifest(record.id)
    assert str(caught.value) == (
        f"{manifest_key(record.id)} in repository region-west in in-memory storage west"
        " is damaged: it is not valid JSON"
    )


def test_a_manifest_stored_under_another_backups_id_is_damaged() -> None:
    storage = MemoryStorage("west")
    repository = Repository(storage, "region-west")
    record = full_record()
    storage.write_atomic(manifest_key("20261126T000000Z-ffffff"), dumps(record_to_json(record)))
    with pytest.raises(IntegrityError, match=f"it names backup {record.id}"):
        repository.read_manifest("20261126T000000Z-ffffff")


def test_damaged_settings_read_from_storage_name_the_object() -> None:
    storage = MemoryStorage("west")
    repository = Repository(storage, "region-west")
    storage.write_atomic("settings.json", b"[1, 2")
    with pytest.raises(IntegrityError, match=r"^settings\.json in repository region-west"):
        repository.read_settings()


def summary_at(hour: int, status: BackupStatus, suffix: str = "000000") -> BackupRecord:
    created = CREATED + timedelta(hours=hour)
    return replace(
        full_record().summary(),
        id=format_backup_id(created, suffix),
        status=status,
        created_at=created,
        started_at=created,
    )


def test_a_backup_id_names_its_creation_time_and_reads_back_as_it() -> None:
    backup_id = format_backup_id(CREATED + timedelta(seconds=7), "3f9a1c")
    assert backup_id == "20261125T120007Z-3f9a1c"
    assert parse_backup_id(backup_id) == CREATED + timedelta(seconds=7)


@pytest.mark.parametrize(
    "text",
    [
        "latest",
        "../../quickstart/settings",
        "20261125T120000Z-3f9a1c/../../settings",
        "20261125T120000Z-3f9a1c\n",
        "20261125T120000Z-3F9A1C",
        "20261125T120000Z-3f9a1",
        "20261125T1200Z-3f9a1c",
        "",
    ],
)
def test_what_is_not_exactly_a_backup_id_is_refused(text: str) -> None:
    assert parse_backup_id(text) is None


def test_the_newest_succeeded_backup_is_chosen_by_creation_time_not_position() -> None:
    older = summary_at(0, BackupStatus.SUCCEEDED)
    newest = summary_at(5, BackupStatus.SUCCEEDED)
    later_but_not_succeeded = [
        summary_at(hour, status)
        for hour, status in (
            (6, BackupStatus.CORRUPT),
            (7, BackupStatus.PARTIALLY_SUCCEEDED),
            (8, BackupStatus.FAILED),
            (9, BackupStatus.RUNNING),
        )
    ]
    assert newest_succeeded([newest, older, *later_but_not_succeeded]) == newest
    assert newest_succeeded(later_but_not_succeeded) is None


def test_of_two_succeeded_backups_created_the_same_second_the_greater_id_is_newest() -> None:
    low, high = (
        summary_at(1, BackupStatus.SUCCEEDED, "0000aa"),
        summary_at(1, BackupStatus.SUCCEEDED, "0000ab"),
    )
    assert newest_succeeded([high, low]) == high
    assert newest_succeeded([low, high]) == high
