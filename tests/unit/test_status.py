"""The status use case on real local repositories: health, alerts, paging, history.

Catalogs are planted (a year of backups in milliseconds) where only the
statuses and times matter; real backups are made where a source's error or a
verification's verdict is what the page shows."""

from __future__ import annotations

import errno
import itertools
import json
import shutil
import textwrap
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest

from reconciler.backup.engine import run_backup
from reconciler.backup.verify import Verification, verdicts_of
from reconciler.errors import IntegrityError
from reconciler.reconcile.prepared import prepare
from reconciler.repository.layout import FORMAT_KEY
from reconciler.repository.lock import RepositoryLock
from reconciler.repository.records import BackupRecord, BackupStatus, SourceResult, SourceStatus
from reconciler.repository.store import Repository
from reconciler.spec import load_configurations
from reconciler.spec.model import BackupConfiguration
from reconciler.storage.local import LocalStorage, translate_os_error
from reconciler.storage.memory import MemoryStorage
from reconciler.usecases.status import Activity, alert_kind_of, build_status, find_backup
from reconciler.usecases.status_json import (
    backup_document,
    configuration_document,
    status_document,
)
from reconciler.usecases.status_model import (
    MAX_HISTORY_POINTS,
    AlertKind,
    ConfigurationStatus,
    Health,
    LastReconcile,
    Progress,
)
from tests.plant import plant_catalog, plant_format

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "schemas" / "status.schema.json").read_text(encoding="utf-8"))
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
SECOND = timedelta(seconds=1)

CONFIG = """\
apiVersion: backupctl/v1
kind: BackupConfiguration
metadata:
  name: region-west
spec:
  storage:
    local: {{path: ./repository}}
  encryption:
    certificate: {{file: backup.cer}}
  schedule: {{enabled: {enabled}, frequencyHours: 12, retryAfterMinutes: 30}}
  sources:
    - name: deployment-inputs
      files: {{path: stamp}}
{extra}"""

FAILING = """\
    - name: key-vault
      command: {backup: [sh, -c, "echo '<script>alert(1)</script>' >&2; exit 3"]}
"""


def configure(tmp_path: Path, enabled: bool = True, extra: str = "") -> BackupConfiguration:
    tmp_path.mkdir(exist_ok=True)
    shutil.copy(ROOT / "examples" / "keys" / "demo-backup.cer", tmp_path / "backup.cer")
    (tmp_path / "stamp").mkdir(exist_ok=True)
    (tmp_path / "repository").mkdir(exist_ok=True)
    (tmp_path / "stamp" / "region.json").write_text('{"region": "west"}\n')
    text = CONFIG.format(enabled=str(enabled).lower(), extra=extra)
    (tmp_path / "region.yaml").write_text(textwrap.dedent(text), encoding="utf-8")
    [config] = load_configurations(tmp_path / "region.yaml", check_validity=False)
    return config


@pytest.fixture
def config(tmp_path: Path) -> BackupConfiguration:
    return configure(tmp_path)


def repository_of(config: BackupConfiguration, *backups: BackupRecord) -> Repository:
    repository = prepare(config).repository
    repository.storage.ensure_root()
    plant_format(repository, NOW - 400 * 24 * HOUR)
    plant_catalog(repository, backups)
    return repository


def record(
    created: datetime,
    status: BackupStatus = BackupStatus.SUCCEEDED,
    size: int = 1000,
    seconds: float = 60.0,
) -> BackupRecord:
    return BackupRecord(
        id=f"{created:%Y%m%dT%H%M%SZ}-{int(created.timestamp()) % 0xFFFFFF:06x}",
        configuration="region-west",
        status=status,
        created_at=created,
        started_at=created,
        completed_at=None
        if status is BackupStatus.RUNNING
        else created + timedelta(seconds=seconds),
        trigger="scheduled",
        key_thumbprint="AB" * 20,
        sources=(
            SourceResult(
                "deployment-inputs", "files", SourceStatus.SUCCEEDED, size, size, 3, None, None
            ),
        ),
    )


def status_of(config: BackupConfiguration, **kwargs: object) -> ConfigurationStatus:
    [status] = build_status([config], NOW, **kwargs).configurations  # type: ignore[arg-type]
    return status


def kinds(status: ConfigurationStatus) -> list[tuple[AlertKind, Health]]:
    return [(a.kind, a.severity) for a in status.alerts]


# ------------------------------------------------------------------ health


def test_a_recent_succeeded_backup_is_ok_and_the_next_one_is_due_a_frequency_later(
    config: BackupConfiguration,
) -> None:
    newest = record(NOW - 3 * HOUR)
    repository_of(config, record(NOW - 15 * HOUR), newest)
    status = status_of(config)
    assert status.health is Health.OK
    assert status.alerts == ()
    assert status.health_reason == (
        "the last Succeeded backup is 3 hours old; the schedule asks for one every 12 hours"
    )
    assert status.last_success is not None and status.last_success.id == newest.id
    assert status.next_backup_at == newest.created_at + 12 * HOUR
    assert status.frequency_hours == 12
    assert status.repository_format == 1
    assert (status.backup_count, status.stored_bytes) == (2, 2000)


@pytest.mark.parametrize(
    ("age", "health"),
    [
        (12 * HOUR + 30 * MINUTE, Health.OK),
        (12 * HOUR + 31 * MINUTE, Health.WARNING),
        (24 * HOUR, Health.WARNING),
        (24 * HOUR + MINUTE, Health.CRITICAL),
    ],
)
def test_the_last_success_older_than_frequency_plus_retry_warns_and_twice_the_frequency_is_critical(
    config: BackupConfiguration, age: timedelta, health: Health
) -> None:
    repository_of(config, record(NOW - age))
    status = status_of(config)
    assert status.health is health
    if health is Health.OK:
        assert status.alerts == ()
    else:
        assert kinds(status) == [(AlertKind.GENERAL, health)]
        assert status.health_reason == status.alerts[0].message
        assert "the schedule asks for one every 12 hours" in status.health_reason
        assert status.next_backup_at == NOW  # due: the daemon's next tick makes one


def test_a_repository_holding_no_succeeded_backup_is_critical(
    config: BackupConfiguration,
) -> None:
    repository_of(config, record(NOW - HOUR, BackupStatus.FAILED))
    status = status_of(config)
    assert status.health is Health.CRITICAL
    assert (AlertKind.GENERAL, Health.CRITICAL) in kinds(status)
    assert "holds no Succeeded backup" in status.health_reason
    assert status.last_success is None


def test_a_repository_whose_first_backup_never_committed_is_critical(
    config: BackupConfiguration,
) -> None:
    repository_of(config)  # created, but its first backup failed uncommitted (storage full)
    status = status_of(config)
    assert status.health is Health.CRITICAL
    assert kinds(status) == [(AlertKind.GENERAL, Health.CRITICAL)]
    assert status.next_backup_at == NOW


def test_with_the_schedule_off_age_does_not_matter_and_no_backup_is_scheduled(
    tmp_path: Path,
) -> None:
    config = configure(tmp_path, enabled=False)
    repository_of(config, record(NOW - 90 * 24 * HOUR))
    status = status_of(config)
    assert (status.health, status.alerts) == (Health.OK, ())
    assert status.health_reason == "the schedule is off"
    assert status.frequency_hours is None
    assert status.next_backup_at is None


def test_a_failed_last_attempt_warns_quoting_the_sources_error(tmp_path: Path) -> None:
    config = configure(tmp_path, extra=FAILING)
    repository = repository_of(config, record(NOW - 2 * HOUR))
    failed = run_backup(repository, config, NOW - HOUR, "scheduled")
    assert failed.status is BackupStatus.PARTIALLY_SUCCEEDED
    status = status_of(config)
    assert status.health is Health.WARNING
    [alert] = status.alerts
    assert (alert.kind, alert.severity) == (AlertKind.GENERAL, Health.WARNING)
    assert alert.message.startswith(f"the last backup ({failed.id}) ended PartiallySucceeded")
    assert "key-vault:" in alert.message and "<script>alert(1)</script>" in alert.message
    # A Succeeded backup is recent: no retry, the next one when it leaves the window.
    assert status.next_backup_at == NOW - 2 * HOUR + 12 * HOUR


def test_a_corrupt_backup_is_a_failed_verification_warning(config: BackupConfiguration) -> None:
    repository = repository_of(config)
    older = run_backup(repository, config, NOW - 2 * HOUR, "scheduled")
    run_backup(repository, config, NOW - HOUR, "scheduled")
    verdict = Verification(older.id, full=False, problems=("pack 1a2b is truncated",))
    repository.record_verdicts(verdicts_of([verdict]), NOW)
    status = status_of(config)
    assert status.health is Health.WARNING
    [alert] = status.alerts
    assert (alert.kind, alert.severity) == (AlertKind.FAILED_VERIFICATION, Health.WARNING)
    assert older.id in alert.message and "pack 1a2b is truncated" in alert.message


def test_a_certificate_expiring_within_30_days_warns_and_an_expired_one_is_critical(
    config: BackupConfiguration,
) -> None:
    not_after = config.encryption.certificate.not_after
    repository_of(config, record(not_after - 20 * 24 * HOUR - HOUR))
    [soon] = build_status([config], not_after - 20 * 24 * HOUR).configurations
    assert soon.health is Health.WARNING
    assert kinds(soon) == [(AlertKind.CERTIFICATE_EXPIRY, Health.WARNING)]
    assert "within 30 days" in soon.alerts[0].message
    [later] = build_status([config], not_after - 40 * 24 * HOUR).configurations
    assert AlertKind.CERTIFICATE_EXPIRY not in [a.kind for a in later.alerts]
    [expired] = build_status([config], not_after + HOUR).configurations
    assert expired.health is Health.CRITICAL
    assert (AlertKind.CERTIFICATE_EXPIRY, Health.CRITICAL) in kinds(expired)


def test_no_repository_is_unknown_before_the_first_reconcile_and_critical_after(
    config: BackupConfiguration,
) -> None:
    before = status_of(config)
    assert before.health is Health.UNKNOWN
    assert kinds(before) == [(AlertKind.PATH_OR_PERMISSION, Health.WARNING)]
    assert "no repository exists at local folder" in before.alerts[0].message
    assert before.repository_format is None and before.backups.total == 0
    reconciled = Activity(LastReconcile(NOW - MINUTE, "failed", "the disk is gone"))
    after = status_of(config, daemon_state={"region-west": reconciled})
    assert after.health is Health.CRITICAL
    assert (AlertKind.PATH_OR_PERMISSION, Health.CRITICAL) in kinds(after)


def test_a_damaged_repository_is_a_critical_alert_not_an_exception(
    config: BackupConfiguration,
) -> None:
    repository = repository_of(config, record(NOW - HOUR))
    repository.storage.write_atomic(FORMAT_KEY, b"{not json")
    status = status_of(config)
    assert status.health is Health.CRITICAL
    [alert] = status.alerts
    assert (alert.kind, alert.severity) == (AlertKind.FAILED_VERIFICATION, Health.CRITICAL)
    assert alert.message.startswith("cannot read: ") and "format.json" in alert.message
    assert status.repository_format is None and status.next_backup_at is None


def test_a_damaged_catalog_warns_and_the_backups_are_read_from_their_manifests(
    config: BackupConfiguration,
) -> None:
    repository = repository_of(config)
    made = run_backup(repository, config, NOW - HOUR, "scheduled")
    repository.storage.write_atomic("catalog.json", b"garbage")
    status = status_of(config)
    assert status.health is Health.WARNING
    assert kinds(status) == [(AlertKind.GENERAL, Health.WARNING)]
    assert "the catalog is damaged" in status.alerts[0].message
    assert status.last_success is not None and status.last_success.id == made.id


# ------------------------------------------------------------------ the daemon's side


def test_a_failed_reconcile_warns_with_the_kind_of_its_error(
    config: BackupConfiguration,
) -> None:
    repository_of(config, record(NOW - HOUR))
    last = LastReconcile(NOW - MINUTE, "failed", "backup.run: no space left on the device")
    full = Activity(last, AlertKind.CAPACITY)
    status = status_of(config, daemon_state={"region-west": full})
    assert status.health is Health.WARNING
    assert kinds(status) == [(AlertKind.CAPACITY, Health.WARNING)]
    assert "no space left" in status.alerts[0].message
    assert status.last_reconcile == last
    # A failure the catalog already shows (a backup's failed source) is not repeated.
    shown = Activity(last, None)
    assert status_of(config, daemon_state={"region-west": shown}).alerts == ()
    locked = Activity(replace(last, result="locked"), None)
    assert status_of(config, daemon_state={"region-west": locked}).health is Health.OK


def test_the_daemons_backup_in_progress_is_named_by_the_catalogs_running_entry(
    config: BackupConfiguration,
) -> None:
    running = record(NOW - MINUTE, BackupStatus.RUNNING)
    repository_of(config, record(NOW - 2 * HOUR), running)
    progress = Progress(None, "deployment-inputs", 0, 1, 4096, 8192, NOW - MINUTE)
    status = status_of(config, daemon_state={"region-west": Activity(running=progress)})
    assert status.running == replace(progress, backup_id=running.id)
    assert status.health is Health.OK


def test_outside_the_daemon_a_running_entry_shows_while_its_writer_holds_the_lock(
    config: BackupConfiguration,
) -> None:
    running = record(NOW - MINUTE, BackupStatus.RUNNING)
    repository = repository_of(config, running)
    assert status_of(config).running is None  # a leftover of a run that died
    with RepositoryLock(repository.storage, config.name, "backupctl apply"):
        [status] = build_status([config], datetime.now(UTC)).configurations
    assert status.running is not None and status.running.backup_id == running.id
    assert status.running.sources_total == 1
    # The first backup being made is no reason for alarm.
    assert status.health is Health.UNKNOWN and status.alerts == ()


# ------------------------------------------------------------------ classification


def test_storage_errors_are_classified_into_the_portals_alert_kinds(tmp_path: Path) -> None:
    local = LocalStorage(tmp_path / "repository")
    with pytest.raises(Exception) as missing:
        local.read("catalog.json")
    assert alert_kind_of(missing.value) is AlertKind.PATH_OR_PERMISSION
    with pytest.raises(Exception) as unmounted:
        LocalStorage(tmp_path / "not-mounted" / "repository").ensure_root()
    assert alert_kind_of(unmounted.value) is AlertKind.CONNECTIVITY
    memory = MemoryStorage()
    memory.write_atomic("backups/a/manifest.json", b"{}")
    with pytest.raises(Exception) as onto_folder:
        memory.write_atomic("backups/a", b"{}")
    assert alert_kind_of(onto_folder.value) is AlertKind.CONNECTIVITY
    full = translate_os_error(OSError(errno.ENOSPC, "No space left on device"), "cannot write x")
    assert alert_kind_of(full) is AlertKind.CAPACITY
    denied = translate_os_error(OSError(errno.EACCES, "Permission denied"), "cannot read x")
    assert alert_kind_of(denied) is AlertKind.PATH_OR_PERMISSION
    assert alert_kind_of(IntegrityError("x")) is AlertKind.FAILED_VERIFICATION
    assert alert_kind_of(RuntimeError("a bug")) is AlertKind.GENERAL


# ------------------------------------------------------------------ paging and history


def test_backups_are_paged_newest_first_and_a_page_past_the_last_is_empty(
    config: BackupConfiguration,
) -> None:
    backups = [record(NOW - (120 - i) * HOUR) for i in range(120)]
    repository_of(config, *backups)
    newest_first = [b.id for b in reversed(backups)]
    pages = [status_of(config, page=n, page_size=50).backups for n in (1, 2, 3, 4)]
    assert [p.pages for p in pages] == [3, 3, 3, 3]
    assert [p.total for p in pages] == [120] * 4
    assert [b.id for b in pages[0].items] == newest_first[:50]
    assert [b.id for b in pages[1].items] == newest_first[50:100]
    assert [b.id for b in pages[2].items] == newest_first[100:]
    assert pages[3].items == ()


def test_a_long_history_is_thinned_evenly_keeping_the_oldest_and_the_newest(
    config: BackupConfiguration,
) -> None:
    backups = [record(NOW - (2000 - i) * HOUR, size=i) for i in range(2000)]
    running = record(NOW - MINUTE, BackupStatus.RUNNING)
    repository_of(config, *backups, running)
    history = status_of(config).history
    assert len(history) == MAX_HISTORY_POINTS
    assert history[0].created_at == backups[0].created_at
    assert history[-1].created_at == backups[-1].created_at
    sizes = [p.size_bytes for p in history]
    assert sizes == sorted(set(sizes))
    gaps = {b - a for a, b in itertools.pairwise(sizes)}
    assert gaps <= {4, 5}  # 1999 steps over 499 gaps: evenly, not the newest 500
    short = [record(NOW - (3 - i) * HOUR) for i in range(3)]
    repository_of(config, *short)
    assert [p.created_at for p in status_of(config).history] == [b.created_at for b in short]


def test_only_names_one_configuration_and_find_backup_reads_one_from_the_catalog(
    config: BackupConfiguration,
) -> None:
    newest = record(NOW - HOUR)
    repository_of(config, record(NOW - 2 * HOUR), newest)
    assert build_status([config], NOW, only="elsewhere").configurations == ()
    assert [c.name for c in build_status([config], NOW, only="region-west").configurations] == [
        "region-west"
    ]
    found = find_backup(config, newest.id)
    assert found is not None and found.sources[0].name == "deployment-inputs"
    assert find_backup(config, "20200101T000000Z-000000") is None


# ------------------------------------------------------------------ JSON


def test_every_api_document_of_a_real_status_follows_the_schema(tmp_path: Path) -> None:
    config = configure(tmp_path, extra=FAILING)
    repository = repository_of(config)
    made = run_backup(repository, config, NOW - HOUR, "scheduled")
    progress = Progress(None, "key-vault", 1, 2, 10, None, NOW)
    activity = Activity(LastReconcile(NOW, "failed", "x"), AlertKind.GENERAL, progress)
    report = build_status([config], NOW, {"region-west": activity})
    [status] = report.configurations
    documents = [
        status_document(report),
        configuration_document(status, NOW),
        backup_document("region-west", status.backups.items[0], NOW),
        status_document(build_status([configure(tmp_path / "empty", extra="")], NOW)),
    ]
    validator = jsonschema.Draft202012Validator(
        SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    for document in documents:
        validator.validate(json.loads(json.dumps(document)))
        assert document["apiVersion"] == "v1"
    configuration = documents[0]["configurations"][0]
    assert configuration["backups"]["items"][0]["id"] == made.id
    assert configuration["running"]["sourcesTotal"] == 2
    assert configuration["alerts"][0]["kind"] == "general"
    broken = json.loads(json.dumps(documents[0]))
    broken["configurations"][0]["health"] = "fine"
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(broken)
