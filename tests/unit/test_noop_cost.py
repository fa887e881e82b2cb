"""Reconcile cost does not grow with history.

A repository holds 10 or 10,000 backups; a plan with nothing to do reads the
same few storage objects either way (the catalog, not the manifests), and a
no-op apply writes nothing but its lock. The backups are made the way apply
leaves them: one real backup, then older copies of its manifest each in a
folder of its own, and one catalog listing them all."""

from __future__ import annotations

import shutil
import textwrap
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from reconciler.reconcile.actions import PruneBackups
from reconciler.reconcile.apply import ApplyContext, apply_plan
from reconciler.reconcile.prepared import Prepared
from reconciler.reconcile.session import make_plan, reconcile
from reconciler.repository.layout import LOCK_KEY
from reconciler.repository.records import BackupStatus
from reconciler.repository.store import Repository
from reconciler.spec import load_configurations
from reconciler.spec.model import BackupConfiguration
from reconciler.storage.memory import MemoryStorage
from reconciler.timeutil import compact
from tests.plant import plant_catalog, plant_manifest

DEMO_CERT = Path(__file__).resolve().parents[2] / "examples" / "keys" / "demo-backup.cer"
NEWEST = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
NOW = NEWEST + timedelta(hours=1)

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
  schedule: {enabled: true, frequencyHours: 12}
  retention: {days: 3650, minBackups: 2}
  sources:
    - name: deployment-inputs
      files: {path: stamp}
"""


@dataclass(frozen=True)
class Counts:
    reads: int
    lookups: int
    lists: int
    writes: int
    bytes_read: int

    @classmethod
    def of(cls, storage: MemoryStorage) -> Counts:
        return cls(
            storage.reads, storage.lookups, storage.lists, storage.writes, storage.bytes_read
        )

    def __sub__(self, other: Counts) -> Counts:
        return Counts(
            self.reads - other.reads,
            self.lookups - other.lookups,
            self.lists - other.lists,
            self.writes - other.writes,
            self.bytes_read - other.bytes_read,
        )


def region_config(tmp_path: Path) -> BackupConfiguration:
    shutil.copy(DEMO_CERT, tmp_path / "backup.cer")
    (tmp_path / "stamp").mkdir()
    (tmp_path / "stamp" / "region.json").write_text('{"region": "west"}\n', encoding="utf-8")
    path = tmp_path / "region.yaml"
    path.write_text(textwrap.dedent(CONFIG), encoding="utf-8")
    [config] = load_configurations(path)
    return config


def repository_with(count: int, config: BackupConfiguration) -> Prepared:
    """A repository holding ``count`` Succeeded backups, the newest made at NEWEST."""
    storage = MemoryStorage(f"{count} backups")
    prepared = Prepared(config, Repository(storage, config.name), None)
    plan, _outcomes = reconcile(prepared, NEWEST, lock_command="test first apply")
    assert [a.name for a in plan.actions] == ["repository.init", "backup.run"]
    repository = prepared.repository
    [real] = repository.read_catalog().backups
    assert real.status is BackupStatus.SUCCEEDED
    manifest = repository.read_manifest(real.id)
    records = [real]
    for index in range(1, count):
        created = NEWEST - timedelta(hours=index)
        record = replace(
            manifest,
            id=f"{compact(created)}-{index:06x}",
            created_at=created,
            started_at=created,
            completed_at=created + timedelta(seconds=3),
        )
        plant_manifest(repository, record)
        records.append(record.summary())
    plant_catalog(repository, tuple(records))
    return prepared


@pytest.fixture(scope="module")
def repositories(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Prepared]:
    config = region_config(tmp_path_factory.mktemp("region"))
    return {count: repository_with(count, config) for count in (10, 10_000)}


def storage_of(prepared: Prepared) -> MemoryStorage:
    storage = prepared.repository.storage
    assert isinstance(storage, MemoryStorage)
    return storage


def test_the_repositories_hold_the_backups_they_should(
    repositories: dict[int, Prepared],
) -> None:
    for count, prepared in repositories.items():
        catalog = prepared.repository.read_catalog()
        assert len(catalog.backups) == count
        assert catalog.damaged is None
        manifests = [k for k in storage_of(prepared).objects if k.endswith("/manifest.json")]
        assert len(manifests) == count


def test_a_no_op_plan_reads_the_same_few_objects_with_10_and_with_10000_backups(
    repositories: dict[int, Prepared],
) -> None:
    used: dict[int, Counts] = {}
    for count, prepared in repositories.items():
        storage = storage_of(prepared)
        before = Counts.of(storage)
        plan, observed = make_plan(prepared, NOW)
        used[count] = Counts.of(storage) - before
        assert plan.actions == (), [a.name for a in plan.actions]
        # Planned from the catalog's head: it counts every backup, carries the newest.
        assert observed.head is not None and observed.head.count == count
        assert [b.id for b in observed.backups] == [b.id for b in observed.head.tail or ()]
        assert observed.cleanup == () and observed.drift == ()

    assert used[10_000].writes == 0
    # format, settings, catalog head, lock; one listing of backups/ and one of the root
    assert used[10_000].reads + used[10_000].lookups <= 6
    assert used[10_000].lists <= 2
    assert (used[10].reads, used[10].lookups, used[10].lists) == (
        used[10_000].reads,
        used[10_000].lookups,
        used[10_000].lists,
    )
    # Not even the bytes read grow with the history: the head, not the catalog
    # (which is 8 MB with 10,000 backups), and the small objects beside it.
    catalog_bytes = len(storage_of(repositories[10_000]).objects["catalog.json"])
    assert catalog_bytes > 5_000_000
    assert used[10].bytes_read < 40_000 and used[10_000].bytes_read < 40_000


def test_a_plan_reads_the_whole_catalog_when_the_head_cannot_decide(
    repositories: dict[int, Prepared],
) -> None:
    """Ten years later every backup is old enough to prune: the head says so, and
    the plan reads the catalog to find which."""
    prepared = repositories[10_000]
    storage = storage_of(prepared)
    before = Counts.of(storage)

    plan, observed = make_plan(prepared, NOW + timedelta(days=3651))

    assert observed.head is None and len(observed.backups) == 10_000
    prune = plan.action(PruneBackups)
    assert isinstance(prune, PruneBackups) and len(prune.backups) == 9_999  # minBackups 2, one new
    assert (Counts.of(storage) - before).bytes_read > 5_000_000


def test_a_no_op_apply_plan_writes_and_deletes_nothing(
    repositories: dict[int, Prepared],
) -> None:
    prepared = repositories[10_000]
    storage = storage_of(prepared)
    plan, _observed = make_plan(prepared, NOW)
    objects = dict(storage.objects)
    written, deleted = len(storage.written), len(storage.deleted)

    outcomes = apply_plan(plan, ApplyContext(prepared.repository, prepared.config, NOW, NOW, None))

    assert outcomes == []
    assert storage.written[written:] == []
    assert storage.deleted[deleted:] == []
    assert storage.objects == objects


def test_a_no_op_apply_under_the_lock_writes_only_the_lock(
    repositories: dict[int, Prepared],
) -> None:
    for prepared in repositories.values():
        storage = storage_of(prepared)
        objects = dict(storage.objects)
        written, deleted = len(storage.written), len(storage.deleted)

        plan, outcomes = reconcile(prepared, NOW, lock_command="test no-op apply")

        assert plan.actions == ()
        assert outcomes == []
        assert storage.written[written:] == [LOCK_KEY]
        assert storage.deleted[deleted:] == [LOCK_KEY]
        assert storage.objects == objects
