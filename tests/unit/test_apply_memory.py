"""Observe, plan and apply against in-memory storage; the repository lock.

Backups here are real: small files, a tiny SQLite database and a command's
output are read from a temporary folder, encrypted and stored in a
MemoryStorage wrapped in a Repository."""

from __future__ import annotations

import json
import shutil
import socket
import sqlite3
import subprocess
import textwrap
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from reconciler.crypto.keys import create_key_pair
from reconciler.errors import LockedError, PermissionDeniedError, StorageFullError
from reconciler.reconcile.actions import (
    CleanupStaging,
    PruneBackups,
    RewrapKeys,
    RunBackup,
    UpdateSettings,
)
from reconciler.reconcile.apply import ApplyContext, Outcome, OutcomeStatus, apply_plan
from reconciler.reconcile.observe import observe
from reconciler.reconcile.plan import ConfigurationPlan, plan_configuration
from reconciler.reconcile.policy.retention import Prunable
from reconciler.reconcile.policy.settings import SettingChange
from reconciler.reconcile.prepared import Prepared
from reconciler.reconcile.render import render_text
from reconciler.reconcile.session import complete_observation, desired_state, reconcile
from reconciler.reconcile.state import Desired, ObservedState
from reconciler.repository.layout import CATALOG_KEY, LOCK_KEY, manifest_key
from reconciler.repository.lock import RepositoryLock, read_lock
from reconciler.repository.records import BackupRecord, BackupStatus, dumps
from reconciler.repository.store import Repository
from reconciler.repository.survey import CleanupItem
from reconciler.spec import load_configurations
from reconciler.spec.model import BackupConfiguration, CommandSource, Retention
from reconciler.storage.factory import Credentials
from reconciler.storage.memory import MemoryStorage
from reconciler.timeutil import format_time, now_utc
from tests.plant import plant_catalog

DEMO_CERT = Path(__file__).resolve().parents[2] / "examples" / "keys" / "demo-backup.cer"
T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)

CONFIG = """\
apiVersion: backupctl/v1
kind: BackupConfiguration
metadata:
  name: region-west
spec:
  storage:
    local: {path: ./unused}
  encryption:
    certificate: {file: backup.cer}
  retention:
    days: 7
    minBackups: 2
  sources:
    - name: deployment-inputs
      files: {path: stamp/deployment}
    - name: resource-manager
      sqlite: {path: stamp/arm.db}
    - name: key-vault
      command: {backup: [printf, x]}
"""


@dataclass
class Region:
    config: BackupConfiguration
    storage: MemoryStorage
    repository: Repository

    def observe(self, now: datetime) -> ObservedState:
        return observe(self.repository, now)

    def plan(self, now: datetime) -> ConfigurationPlan:
        return plan_configuration(Desired(self.config), self.observe(now), now)

    def apply(
        self, plan: ConfigurationPlan, now: datetime, config: BackupConfiguration | None = None
    ) -> list[Outcome]:
        context = ApplyContext(self.repository, config or self.config, now, now, None)
        return apply_plan(plan, context)

    def reconcile(self, now: datetime) -> tuple[ConfigurationPlan, list[Outcome]]:
        plan = self.plan(now)
        outcomes = self.apply(plan, now)
        assert [o.status for o in outcomes] == [OutcomeStatus.DONE] * len(outcomes), outcomes
        return plan, outcomes

    def catalog(self) -> list[BackupRecord]:
        return list(self.repository.read_catalog().backups)

    def backup_ids(self) -> list[str]:
        return [b.id for b in self.catalog()]


@pytest.fixture
def region(tmp_path: Path) -> Region:
    shutil.copy(DEMO_CERT, tmp_path / "backup.cer")
    deployment = tmp_path / "stamp" / "deployment"
    deployment.mkdir(parents=True)
    (deployment / "region.json").write_text('{"region": "west"}\n', encoding="utf-8")
    with sqlite3.connect(tmp_path / "stamp" / "arm.db") as db:
        db.execute("create table plans (name text)")
        db.execute("insert into plans values ('gold')")
    db.close()
    path = tmp_path / "region.yaml"
    path.write_text(textwrap.dedent(CONFIG), encoding="utf-8")
    [config] = load_configurations(path)
    storage = MemoryStorage("region")
    return Region(config, storage, Repository(storage, config.name))


def names(plan: ConfigurationPlan) -> list[str]:
    return [a.name for a in plan.actions]


def folders(storage: MemoryStorage) -> set[str]:
    return {k.split("/")[1] for k in storage.objects if k.startswith("backups/")}


# ------------------------------------------------------------------ first apply, idempotency


def test_a_first_apply_initializes_the_repository_and_makes_a_backup(region: Region) -> None:
    plan, outcomes = region.reconcile(T0)
    assert names(plan) == ["repository.init", "backup.run"]
    assert outcomes[0].message == f"initialized {region.repository.description}"
    [record] = region.catalog()
    assert record.status is BackupStatus.SUCCEEDED
    assert record.created_at == T0
    assert record.key_thumbprint == region.config.encryption.certificate.thumbprint
    assert [s.name for s in record.sources] == [
        "deployment-inputs",
        "resource-manager",
        "key-vault",
    ]
    assert all(s.size_bytes > 0 for s in record.sources)
    assert outcomes[1].backup is not None
    assert outcomes[1].backup.id == record.id
    assert region.repository.is_initialized()
    settings = region.repository.read_settings()
    assert settings is not None
    assert settings.active_key == region.config.encryption.certificate.thumbprint
    assert settings.last_trigger == ""
    stored = set(region.storage.objects)
    assert {"format.json", "settings.json", "catalog.json", manifest_key(record.id)} <= stored
    assert len([k for k in stored if k.startswith(f"backups/{record.id}/")]) == 4


def test_a_second_plan_right_after_an_apply_is_empty(region: Region) -> None:
    region.reconcile(T0)
    writes = region.storage.writes
    assert region.plan(T0).actions == ()
    assert region.plan(T0 + timedelta(hours=11, minutes=59)).actions == ()
    assert region.storage.writes == writes


def test_an_apply_13_hours_later_plans_and_makes_a_new_backup(region: Region) -> None:
    region.reconcile(T0)
    later = T0 + timedelta(hours=13)
    plan, _ = region.reconcile(later)
    assert names(plan) == ["backup.run"]
    assert "no Succeeded backup in the last 12 hours" in plan.actions[0].reason
    assert [b.created_at for b in region.catalog()] == [T0, later]
    assert region.plan(later).actions == ()


def test_a_new_trigger_makes_one_backup_and_is_remembered(region: Region) -> None:
    region.reconcile(T0)
    region.config = replace(region.config, trigger="before patch 2411")
    plan, _ = region.reconcile(T0 + timedelta(hours=1))
    assert names(plan) == ["backup.run"]
    assert region.catalog()[-1].trigger == "on-demand"
    settings = region.repository.read_settings()
    assert settings is not None
    assert settings.last_trigger == "before patch 2411"
    assert region.plan(T0 + timedelta(hours=2)).actions == ()


def test_changed_settings_are_recorded_once(region: Region) -> None:
    region.reconcile(T0)
    region.config = replace(region.config, retention=Retention(days=14, min_backups=3))
    plan, outcomes = region.reconcile(T0 + timedelta(hours=1))
    assert names(plan) == ["settings.update"]
    assert outcomes[0].message == "spec.retention.days 7 -> 14, spec.retention.minBackups 2 -> 3"
    settings = region.repository.read_settings()
    assert settings is not None
    assert (settings.retention_days, settings.min_backups) == (14, 3)
    assert region.plan(T0 + timedelta(hours=1)).actions == ()


def test_a_new_certificate_is_rotated_in_and_used_by_the_next_backup(region: Region) -> None:
    region.reconcile(T0)
    old = region.config.encryption.certificate
    new, _key = create_key_pair("ec-p256", "CN=new backups", 365, datetime.now(UTC))
    region.config = replace(
        region.config, encryption=replace(region.config.encryption, certificate=new)
    )
    when = T0 + timedelta(hours=13)
    plan, _ = region.reconcile(when)
    assert names(plan) == ["key.rotate", "backup.run"]
    settings = region.repository.read_settings()
    assert settings is not None
    assert settings.active_key == new.thumbprint
    history = {k.thumbprint: k for k in settings.key_history}
    assert history[old.thumbprint].retired_at == when
    assert history[new.thumbprint].retired_at is None
    assert [b.key_thumbprint for b in region.catalog()] == [old.thumbprint, new.thumbprint]
    assert region.plan(when).actions == ()


def test_new_storage_credentials_are_recorded_as_a_fingerprint_only(region: Region) -> None:
    first = Credentials("CONTOSO\\backupop", b"smb\0CONTOSO\\backupop\0first-Secret-1")
    second = Credentials("CONTOSO\\backupop", b"smb\0CONTOSO\\backupop\0second-Secret-2")
    prepared = Prepared(region.config, region.repository, first)
    state = complete_observation(prepared, region.observe(T0))
    plan = plan_configuration(desired_state(prepared), state, T0)
    assert names(plan) == ["repository.init", "backup.run"]
    context = ApplyContext(region.repository, region.config, T0, T0, first)
    apply_plan(plan, context)
    settings = region.repository.read_settings()
    assert settings is not None
    assert settings.credentials is not None
    assert settings.credentials.principal == "CONTOSO\\backupop"
    state = complete_observation(prepared, region.observe(T0))
    assert plan_configuration(desired_state(prepared), state, T0).actions == ()
    assert not any(b"first-Secret-1" in data for data in region.storage.objects.values())
    prepared = Prepared(region.config, region.repository, second)
    state = complete_observation(prepared, region.observe(T0))
    plan = plan_configuration(desired_state(prepared), state, T0)
    assert names(plan) == ["credentials.rotate"]
    apply_plan(plan, ApplyContext(region.repository, region.config, T0, T0, second))
    assert not any(b"second-Secret-2" in data for data in region.storage.objects.values())
    state = complete_observation(prepared, region.observe(T0))
    assert plan_configuration(desired_state(prepared), state, T0).actions == ()


# ------------------------------------------------------------------ retention


def three_daily_backups(region: Region) -> list[str]:
    for day in range(3):
        region.reconcile(T0 + timedelta(days=day))
    ids = region.backup_ids()
    assert len(ids) == 3
    return ids


def test_prune_deletes_only_what_the_plan_listed(region: Region) -> None:
    first, second, third = three_daily_backups(region)
    plan = region.plan(T0 + timedelta(days=7, hours=1))
    assert names(plan) == ["backup.run", "backup.prune", "chunks.reclaim"]
    prune = plan.actions[1]
    assert isinstance(prune, PruneBackups)
    assert [p.backup.id for p in prune.backups] == [first]
    # Applied later than planned, retention would allow more: still only `first` goes.
    outcomes = region.apply(plan, T0 + timedelta(days=30))
    assert outcomes[1].status is OutcomeStatus.DONE
    assert outcomes[1].message == f"deleted 1 backup: {first}"
    remaining = region.backup_ids()
    assert first not in remaining
    assert {second, third} <= set(remaining)
    assert first not in folders(region.storage)
    assert {second, third} <= folders(region.storage)


def test_prune_keeps_a_listed_backup_that_retention_no_longer_allows_deleting(
    region: Region,
) -> None:
    first, second, third = three_daily_backups(region)
    late = T0 + timedelta(days=30)
    doomed = tuple(Prunable(b, 600.0, "listed by hand") for b in region.catalog())
    plan = ConfigurationPlan(
        region.config.name,
        region.storage.description,
        late,
        (PruneBackups("3 backups older than 7 days", doomed),),
    )
    [outcome] = region.apply(plan, late)
    assert outcome.status is OutcomeStatus.DONE
    assert outcome.message == (
        f"deleted 1 backup: {first}; kept 2 planned for deletion, since retention no longer"
        " allows deleting them"
    )
    assert region.backup_ids() == [second, third]


def test_when_the_planned_backup_fails_prune_keeps_the_backup_it_relied_on(
    region: Region, tmp_path: Path
) -> None:
    first, second, third = three_daily_backups(region)
    when = T0 + timedelta(days=9, hours=1)
    plan = region.plan(when)
    prune = plan.action(PruneBackups)
    assert isinstance(prune, PruneBackups)
    assert [p.backup.id for p in prune.backups] == [first, second]
    failing = replace(
        region.config, sources=(CommandSource("key-vault", ("false",), None, 30, tmp_path),)
    )
    run, pruned, reclaimed = region.apply(plan, when, config=failing)
    assert reclaimed.status is OutcomeStatus.DONE
    assert run.status is OutcomeStatus.FAILED
    assert run.backup is not None
    assert run.backup.status is BackupStatus.FAILED
    assert pruned.status is OutcomeStatus.DONE
    kept = [b for b in region.catalog() if b.status is BackupStatus.SUCCEEDED]
    assert [b.id for b in kept] == [second, third]


# ------------------------------------------------------------------ interrupted runs


def test_an_interrupted_backup_is_planned_for_cleanup_and_removed(region: Region) -> None:
    region.reconcile(T0)
    [good] = region.catalog()
    crashed = replace(
        good,
        id="20261120T130000Z-dead01",
        status=BackupStatus.RUNNING,
        created_at=T0 + timedelta(hours=1),
        started_at=T0 + timedelta(hours=1),
        completed_at=None,
        sources=(),
    )
    plant_catalog(region.repository, (good, crashed))
    region.storage.write_atomic(f"backups/{crashed.id}/key-vault.dump.zst.enc", b"partial")
    when = T0 + timedelta(hours=2)
    state = region.observe(when)
    assert [b.id for b in state.backups] == [good.id]
    plan = plan_configuration(Desired(region.config), state, when)
    assert names(plan) == ["staging.cleanup", "chunks.reclaim"]
    assert (
        f"backup {crashed.id} was interrupted before it was committed"
        in (plan.actions[0].details()["items"][0]["reason"])
    )
    outcomes = region.apply(plan, when)
    assert [o.status for o in outcomes] == [OutcomeStatus.DONE, OutcomeStatus.DONE]
    assert region.backup_ids() == [good.id]
    assert folders(region.storage) == {good.id}
    assert region.plan(when).actions == ()


def test_a_committed_backup_still_listed_as_running_is_re_added_with_its_status(
    region: Region,
) -> None:
    region.reconcile(T0)
    [record] = region.catalog()
    plant_catalog(region.repository, (replace(record, status=BackupStatus.RUNNING),))
    when = T0 + timedelta(hours=1)
    state = region.observe(when)
    assert [(b.id, b.status) for b in state.backups] == [(record.id, BackupStatus.SUCCEEDED)]
    plan = plan_configuration(Desired(region.config), state, when)
    assert names(plan) == ["staging.cleanup"]
    region.apply(plan, when)
    [restored] = region.catalog()
    assert restored.id == record.id
    assert restored.status is BackupStatus.SUCCEEDED
    assert restored.sources == record.sources
    assert region.storage.exists(manifest_key(record.id))
    assert region.plan(when).actions == ()


def test_a_damaged_catalog_is_rebuilt_from_the_manifests(region: Region) -> None:
    region.reconcile(T0)
    region.reconcile(T0 + timedelta(days=1))
    ids = region.backup_ids()
    region.storage.write_atomic(CATALOG_KEY, b'{"backups": [ {"id": ')
    when = T0 + timedelta(days=1, hours=1)
    state = region.observe(when)
    assert [b.id for b in state.backups] == ids
    plan = plan_configuration(Desired(region.config), state, when)
    assert names(plan) == ["catalog.repair"]
    assert "the catalog is damaged" in render_text([plan])
    [outcome] = region.apply(plan, when)
    assert outcome.status is OutcomeStatus.DONE
    stored = json.loads(region.storage.objects[CATALOG_KEY])
    assert [b["id"] for b in stored["backups"]] == ids
    assert region.plan(when).actions == ()


def test_a_missing_catalog_is_rebuilt_from_the_manifests(region: Region) -> None:
    region.reconcile(T0)
    ids = region.backup_ids()
    region.storage.delete(CATALOG_KEY)
    when = T0 + timedelta(hours=1)
    plan = region.plan(when)
    assert names(plan) == ["catalog.repair"]
    region.apply(plan, when)
    assert [b["id"] for b in json.loads(region.storage.objects[CATALOG_KEY])["backups"]] == ids
    assert region.plan(when).actions == ()


def test_a_backup_folder_deleted_by_hand_is_dropped_from_the_catalog(region: Region) -> None:
    region.reconcile(T0)
    region.reconcile(T0 + timedelta(hours=13))
    gone, kept = region.backup_ids()
    region.storage.delete_tree(f"backups/{gone}")
    when = T0 + timedelta(hours=14)
    state = region.observe(when)
    assert [b.id for b in state.backups] == [kept]
    plan = plan_configuration(Desired(region.config), state, when)
    assert names(plan) == ["catalog.repair"]
    assert f"backup {gone} is in the catalog but its data is missing" in render_text([plan])
    region.apply(plan, when)
    assert region.backup_ids() == [kept]
    assert region.plan(when).actions == ()


def test_a_committed_backup_missing_from_the_catalog_is_entered_again(region: Region) -> None:
    region.reconcile(T0)
    region.reconcile(T0 + timedelta(hours=13))
    first, second = region.catalog()
    plant_catalog(region.repository, (second,))
    when = T0 + timedelta(hours=14)
    plan = region.plan(when)
    assert names(plan) == ["catalog.repair"]
    region.apply(plan, when)
    assert region.catalog() == [first, second]


def test_a_backup_with_a_damaged_manifest_is_not_deleted_when_the_catalog_is_rebuilt(
    region: Region,
) -> None:
    region.reconcile(T0)
    region.reconcile(T0 + timedelta(days=1))
    damaged, intact = region.backup_ids()
    region.storage.write_atomic(CATALOG_KEY, b"not json")
    region.storage.write_atomic(manifest_key(damaged), b'{"id": "trunc')
    when = T0 + timedelta(days=1, hours=1)
    plan = region.plan(when)
    region.apply(plan, when)
    assert damaged in folders(region.storage)
    statuses = {b.id: b.status for b in region.catalog()}
    assert statuses == {damaged: BackupStatus.CORRUPT, intact: BackupStatus.SUCCEEDED}


def test_an_apply_holding_the_lock_cleans_up_an_interrupted_backup(region: Region) -> None:
    prepared = Prepared(region.config, region.repository, None)
    start = now_utc()
    reconcile(prepared, start, "backupctl apply")
    [good] = region.catalog()
    crashed = replace(
        good, id="20261120T130000Z-dead02", status=BackupStatus.RUNNING, completed_at=None
    )
    plant_catalog(region.repository, (good, crashed))
    region.storage.write_atomic(f"backups/{crashed.id}/key-vault.dump.zst.enc", b"partial")
    assert names(region.plan(start)) == ["staging.cleanup", "chunks.reclaim"]
    plan, _ = reconcile(prepared, start, "backupctl apply")
    assert names(plan) == ["staging.cleanup", "chunks.reclaim"]
    assert region.backup_ids() == [good.id]


# ------------------------------------------------------------------ failures


class FullStorage(MemoryStorage):
    """A storage location that has run out of space: every write fails."""

    def write_atomic(self, key: str, data: bytes) -> None:
        raise StorageFullError(f"no space left on {self.description} writing {key}")


def test_a_failed_repository_init_skips_every_later_action(tmp_path: Path) -> None:
    region_storage = FullStorage("full")
    shutil.copy(DEMO_CERT, tmp_path / "backup.cer")
    path = tmp_path / "region.yaml"
    text = CONFIG.replace(
        "    - name: deployment-inputs\n      files: {path: stamp/deployment}\n"
        "    - name: resource-manager\n      sqlite: {path: stamp/arm.db}\n",
        "",
    )
    path.write_text(text, encoding="utf-8")
    [config] = load_configurations(path)
    region = Region(config, region_storage, Repository(region_storage, config.name))
    plan = region.plan(T0)
    assert names(plan) == ["repository.init", "backup.run"]
    init, run = region.apply(plan, T0)
    assert init.status is OutcomeStatus.FAILED
    assert "no space left" in init.message
    assert run.status is OutcomeStatus.SKIPPED
    assert run.message == "skipped because repository.init failed"
    assert region_storage.objects == {}


class UndeletableStorage(MemoryStorage):
    """A storage location that refuses every delete (a share without delete rights)."""

    def delete(self, key: str) -> None:
        raise PermissionDeniedError(f"{self.description} refuses to delete {key}")


def test_a_failed_action_skips_the_later_actions_that_depend_on_it_and_no_others(
    region: Region,
) -> None:
    region.reconcile(T0)
    storage = UndeletableStorage("region")
    storage.objects.update(region.storage.objects)
    broken = Region(region.config, storage, Repository(storage, region.config.name))
    later = T0 + timedelta(days=1)
    leftover = CleanupItem("x.tmp-1", "a temporary object left by an interrupted write")
    thumbprint = region.config.encryption.certificate.thumbprint
    plan = ConfigurationPlan(
        region.config.name,
        storage.description,
        later,
        (
            CleanupStaging("1 leftover of an interrupted run", (leftover,)),
            UpdateSettings("1 setting changed", (SettingChange("spec.retention.days", 7, 7),)),
            RunBackup("no Succeeded backup in the last 12 hours", "scheduled"),
            RewrapKeys("nothing left to re-wrap", thumbprint, ()),
            PruneBackups("nothing old enough", ()),
        ),
    )
    outcomes = broken.apply(plan, later)
    assert [(o.action.name, o.status) for o in outcomes] == [
        ("staging.cleanup", OutcomeStatus.FAILED),
        ("settings.update", OutcomeStatus.DONE),
        ("backup.run", OutcomeStatus.SKIPPED),
        ("key.rewrap", OutcomeStatus.DONE),
        ("backup.prune", OutcomeStatus.SKIPPED),
    ]
    assert outcomes[2].message == "skipped because staging.cleanup failed"
    assert len(broken.catalog()) == 1, "no backup was made over the leftovers"


def test_a_backup_whose_sources_all_fail_is_recorded_as_failed(
    region: Region, tmp_path: Path
) -> None:
    region.reconcile(T0)
    failing = replace(
        region.config, sources=(CommandSource("key-vault", ("false",), None, 30, tmp_path),)
    )
    when = T0 + timedelta(hours=13)
    plan = region.plan(when)
    [outcome] = region.apply(plan, when, config=failing)
    assert outcome.status is OutcomeStatus.FAILED
    assert "key-vault" in outcome.message
    assert region.catalog()[-1].status is BackupStatus.FAILED
    # Not retried before retryAfterMinutes; retried after.
    assert region.plan(when + timedelta(minutes=29)).actions == ()
    retry = region.plan(when + timedelta(minutes=30))
    assert names(retry) == ["backup.run"]
    action = retry.actions[0]
    assert isinstance(action, RunBackup)
    assert action.trigger == "retry"


# ------------------------------------------------------------------ the repository lock


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def write_lock(storage: MemoryStorage, *, host: str, pid: int, expires: datetime) -> None:
    storage.write_atomic(
        LOCK_KEY,
        dumps(
            {
                "host": host,
                "pid": pid,
                "nonce": "0badc0de",
                "command": "backupctl daemon",
                "createdAt": format_time(expires - timedelta(minutes=5)),
                "expiresAt": format_time(expires),
            }
        ),
    )


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_a_second_lock_is_refused_naming_the_holder() -> None:
    storage = MemoryStorage()
    with RepositoryLock(storage, "region-west", "backupctl apply") as first:
        second = RepositoryLock(storage, "region-west", "backupctl daemon")
        with pytest.raises(LockedError) as caught:
            second.acquire()
        message = str(caught.value)
        holder = first.holder
        assert message.startswith("the repository region-west is locked by backupctl apply")
        assert f"pid {holder.pid} on {holder.host}" in message
        assert f"nonce {holder.nonce}" in message
        assert read_lock(storage) == holder
    assert not storage.exists(LOCK_KEY)


def test_an_expired_lock_is_taken_over() -> None:
    storage = MemoryStorage()
    clock = Clock(T0)
    stale = RepositoryLock(storage, "region-west", "backupctl apply", clock=clock)
    stale.acquire()
    try:
        clock.now = T0 + timedelta(minutes=4, seconds=59)
        with pytest.raises(LockedError):
            RepositoryLock(storage, "region-west", "backupctl daemon", clock=clock).acquire()
        clock.now = T0 + timedelta(minutes=5)
        taker = RepositoryLock(storage, "region-west", "backupctl daemon", clock=clock)
        with taker:
            current = read_lock(storage)
            assert current is not None
            assert current.nonce == taker.holder.nonce
            assert current.command == "backupctl daemon"
    finally:
        stale.release()
    assert not storage.exists(LOCK_KEY)


def test_a_lock_of_a_dead_process_on_this_host_is_taken_over_at_once() -> None:
    storage = MemoryStorage()
    write_lock(
        storage, host=socket.gethostname(), pid=dead_pid(), expires=now_utc() + timedelta(hours=1)
    )
    with RepositoryLock(storage, "region-west", "backupctl apply") as lock:
        current = read_lock(storage)
        assert current is not None
        assert current.nonce == lock.holder.nonce


def test_a_lock_of_a_process_on_another_host_is_respected_until_it_expires() -> None:
    storage = MemoryStorage()
    write_lock(
        storage, host="some-other-host.invalid", pid=dead_pid(), expires=T0 + timedelta(minutes=5)
    )
    with pytest.raises(LockedError, match=r"pid \d+ on some-other-host\.invalid"):
        RepositoryLock(storage, "region-west", "backupctl apply", clock=Clock(T0)).acquire()
    late = RepositoryLock(
        storage, "region-west", "backupctl apply", clock=Clock(T0 + timedelta(minutes=6))
    )
    with late:
        current = read_lock(storage)
        assert current is not None
        assert current.nonce == late.holder.nonce


def test_a_damaged_lock_file_is_taken_over() -> None:
    storage = MemoryStorage()
    storage.write_atomic(LOCK_KEY, b"\x00garbage")
    with RepositoryLock(storage, "region-west", "backupctl apply") as lock:
        current = read_lock(storage)
        assert current is not None
        assert current.nonce == lock.holder.nonce


def test_releasing_does_not_remove_a_lock_someone_else_took_over() -> None:
    storage = MemoryStorage()
    clock = Clock(T0)
    mine = RepositoryLock(storage, "region-west", "backupctl apply", clock=clock)
    mine.acquire()
    clock.now = T0 + timedelta(minutes=10)
    theirs = RepositoryLock(storage, "region-west", "backupctl daemon", clock=clock)
    theirs.acquire()
    try:
        mine.release()
        current = read_lock(storage)
        assert current is not None
        assert current.nonce == theirs.holder.nonce
    finally:
        theirs.release()


class RacingStorage(MemoryStorage):
    """Storage shared with a rival process that tries to take over the same stale lock
    in the moment between this process reading the stale lock and deleting it."""

    def __init__(self) -> None:
        super().__init__("shared")
        self.rival: RepositoryLock | None = None
        self.rival_refused: LockedError | None = None

    def delete(self, key: str) -> None:
        if key == LOCK_KEY and self.rival is not None:
            rival, self.rival = self.rival, None
            try:
                rival.acquire()
            except LockedError as exc:
                self.rival_refused = exc
        super().delete(key)


def test_two_processes_taking_over_the_same_stale_lock_do_not_both_get_it() -> None:
    storage = RacingStorage()
    write_lock(storage, host="gone-host.invalid", pid=4242, expires=T0 - timedelta(minutes=1))
    clock = Clock(T0)
    rival = RepositoryLock(storage, "region-west", "backupctl daemon", clock=clock)
    storage.rival = rival
    mine = RepositoryLock(storage, "region-west", "backupctl apply", clock=clock)
    try:
        mine.acquire()
        assert storage.rival_refused is not None, "both processes took the lock"
        assert "backupctl apply (takeover)" in str(storage.rival_refused)
        current = read_lock(storage)
        assert current is not None
        assert current.nonce == mine.holder.nonce
    finally:
        mine.release()
        rival.release()
