"""The deduplicating repository (format 2) end to end on in-memory storage.

Real backups of a file tree (large and small files), an SQLite database and a
command's output: stored as chunks in packs, restored byte for byte, an
unchanged backup adding nothing, damage in a shared pack found, chunks
reclaimed after a prune (also after a crash in the middle), the index key
checked, and a restore with nothing but the private key."""

from __future__ import annotations

import os
import shutil
import sqlite3
import textwrap
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from reconciler.backup.engine import run_backup
from reconciler.backup.opening import keys_for
from reconciler.backup.reclaim import estimate_reclaim, reclaim_unreferenced
from reconciler.backup.restore import RestoreRequest, restore_backup
from reconciler.backup.verify import verify_backup
from reconciler.crypto.envelope import wrap_data_key
from reconciler.crypto.keyring import KeyRing
from reconciler.crypto.keys import PrivateKey, create_key_pair, load_private_key
from reconciler.dedup.keys import IndexKey
from reconciler.errors import ConfigError, UnreachableError
from reconciler.reconcile.actions import UpgradeRepository
from reconciler.reconcile.apply import ApplyContext, OutcomeStatus, apply_plan, index_keys
from reconciler.reconcile.plan import ConfigurationPlan
from reconciler.repository.keyfiles import new_index_key_record
from reconciler.repository.layout import DELTAS_DIR, PACKS_DIR
from reconciler.repository.records import BackupRecord, BackupStatus
from reconciler.repository.store import Repository
from reconciler.spec import load_configurations
from reconciler.spec.model import BackupConfiguration
from reconciler.storage.base import TEMP_MARKER
from reconciler.storage.memory import MemoryStorage
from tests.unit.planning_fixtures import applied

KEYS = Path(__file__).resolve().parents[2] / "examples" / "keys"
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
  sources:
    - name: deployment-inputs
      files: {path: stamp/deployment}
    - name: resource-manager
      sqlite: {path: stamp/arm.db}
    - name: key-vault
      command: {backup: [printf, 'vault export']}
"""


class Site:
    """A region's data, its configuration and a format 2 repository in memory."""

    def __init__(self, root: Path, index_key: IndexKey | None = None) -> None:
        self.root = root
        shutil.copy(KEYS / "demo-backup.cer", root / "backup.cer")
        tree = root / "stamp" / "deployment"
        (tree / "small").mkdir(parents=True)
        for n in range(40):
            (tree / "small" / f"doc-{n:02}.json").write_text(f'{{"n": {n}, "pad": "{n * "x"}"}}\n')
        (tree / "big.bin").write_bytes(os.urandom(700_000))
        (tree / "log.txt").write_bytes(b"".join(b"line %d of the log\n" % i for i in range(60_000)))
        with sqlite3.connect(root / "stamp" / "arm.db") as db:
            db.execute("create table plans (name text)")
            db.executemany("insert into plans values (?)", [(f"plan {i}",) for i in range(500)])
        db.close()
        text = textwrap.dedent(CONFIG)
        if index_key is not None:
            (root / "index.key").write_text(index_key.to_base64() + "\n")
            text = text.replace(
                "certificate: {file: backup.cer}\n",
                "certificate: {file: backup.cer}\n    indexKey: {file: index.key}\n",
            )
        (root / "region.yaml").write_text(text, encoding="utf-8")
        [self.config] = load_configurations(root / "region.yaml")
        self.storage = MemoryStorage("region")
        self.repository = Repository(self.storage, self.config.name)
        self.storage.ensure_root()
        self.key, record = new_index_key_record(index_key, self.config.encryption.certificate)
        self.repository.initialize(applied(self.config), T0, record)
        self.ring = KeyRing((load_private_key(KEYS / "demo-backup.pem", None),))

    def backup(self, days: float = 0, config: BackupConfiguration | None = None) -> BackupRecord:
        record = run_backup(
            self.repository, config or self.config, T0 + timedelta(days=days), "scheduled"
        )
        assert record.status is BackupStatus.SUCCEEDED, record.sources
        return record

    def restore(self, record: BackupRecord, to: Path) -> Path:
        keys = keys_for(self.repository, record, self.ring, {})
        restore_backup(self.repository, self.config, record, keys, RestoreRequest(to, (), False))
        return to

    def object_keys(self) -> list[str]:
        return sorted(self.storage.objects)

    def packs(self) -> list[str]:
        return [k for k in self.object_keys() if k.startswith(PACKS_DIR + "/")]


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path)


def assert_same_tree(a: Path, b: Path) -> None:
    found = sorted(p.relative_to(b) for p in b.rglob("*"))
    assert sorted(p.relative_to(a) for p in a.rglob("*")) == found
    for path in a.rglob("*"):
        if path.is_file():
            assert (b / path.relative_to(a)).read_bytes() == path.read_bytes(), path


def test_a_backup_is_chunks_in_packs_and_restores_byte_for_byte(site: Site, tmp_path: Path) -> None:
    record = site.backup()
    assert all(s.chunked for s in record.sources)
    folder = f"backups/{record.id}/"
    assert {k.removeprefix(folder) for k in site.object_keys() if k.startswith(folder)} == {
        "manifest.json",
        "deployment-inputs.files.chunks",
        "resource-manager.sqlite.chunks",
        "key-vault.command.chunks",
    }
    assert site.packs() and record.wrapped_key is None
    out = site.restore(record, tmp_path / "out")
    assert_same_tree(site.root / "stamp" / "deployment", out / "deployment-inputs")
    with sqlite3.connect(out / "resource-manager" / "arm.db") as db:
        assert db.execute("select count(*) from plans").fetchone() == (500,)
    db.close()
    assert (out / "key-vault" / "key-vault.dump").read_bytes() == b"vault export"


def test_an_unchanged_backup_adds_no_pack_and_no_index_entry(site: Site) -> None:
    first = site.backup()
    before = site.object_keys()
    second = site.backup(days=1)
    assert sum(s.added_bytes or 0 for s in second.sources) == 0
    added = sorted(set(site.object_keys()) - set(before))
    # Only the new backup's manifest and chunk lists, and its run's data key record.
    assert not [k for k in added if k.startswith((PACKS_DIR, DELTAS_DIR))]
    assert all(k.startswith((f"backups/{second.id}/", "keys/data/")) for k in added), added
    assert second.size_bytes == first.size_bytes


def test_a_changed_small_file_adds_a_small_part_of_the_data(site: Site) -> None:
    first = site.backup()
    doc = site.root / "stamp" / "deployment" / "small" / "doc-07.json"
    doc.write_text('{"n": 7, "changed": true}\n')
    second = site.backup(days=1)
    added = sum(s.added_bytes or 0 for s in second.sources)
    assert 0 < added < first.size_bytes / 10


def test_damage_in_a_shared_pack_marks_every_backup_using_it(site: Site, tmp_path: Path) -> None:
    first, second = site.backup(), site.backup(days=1)
    (pack,) = site.packs()
    data = bytearray(site.storage.read(pack))
    data[len(data) // 3] ^= 0x40
    site.storage.write_atomic(pack, bytes(data))
    for record in (first, second):
        keyless = verify_backup(site.repository, record.id, None, {}, tmp_path)
        full = verify_backup(site.repository, record.id, site.ring, {}, tmp_path)
        assert keyless.damaged and full.damaged
        assert (
            "is damaged: its stored bytes do not hash as the pack's trailer records"
            in (keyless.problems[0])
        )


def test_a_wrong_index_key_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    site = Site(tmp_path, IndexKey.generate())
    site.backup()
    before = {k: site.storage.read(k) for k in site.object_keys()}
    other = IndexKey.generate()
    with pytest.raises(ConfigError, match="is not the index key of repository region-west"):
        index_keys_with(site, other)
    assert {k: site.storage.read(k) for k in site.object_keys()} == before


def index_keys_with(site: Site, key: IndexKey) -> None:
    from reconciler.repository.keyfiles import backup_index_key

    record = site.repository.read_index_key()
    assert record is not None
    backup_index_key(record, key, site.repository.description)


def test_a_configured_key_stays_out_of_the_storage_and_the_private_key_alone_restores(
    tmp_path: Path,
) -> None:
    key = IndexKey.generate()
    site = Site(tmp_path, key)
    record = site.backup()
    stored = site.repository.read_index_key()
    assert stored is not None and stored.stored is None
    assert not any(key.to_base64().encode() in site.storage.read(k) for k in site.object_keys())
    # A restore host knows no index key: the private key unwraps it.
    out = site.restore(record, tmp_path / "out")
    assert (out / "key-vault" / "key-vault.dump").read_bytes() == b"vault export"


def test_reclaim_after_prune_frees_what_only_the_pruned_backup_used(
    site: Site, tmp_path: Path
) -> None:
    big = site.root / "stamp" / "deployment" / "big.bin"
    old = site.backup()
    big.write_bytes(os.urandom(700_000))  # the old content is only in `old`
    kept = site.backup(days=1)
    keys = index_keys(site.repository, site.config)
    estimate = estimate_reclaim(site.repository, keys, [old.id])
    assert estimate.freed_bytes > 600_000
    site.repository.prune([old.id])
    report = reclaim_unreferenced(site.repository, keys)
    assert report.freed_bytes == estimate.freed_bytes
    assert report.dropped_chunks > 0
    out = site.restore(kept, tmp_path / "out")
    assert_same_tree(site.root / "stamp" / "deployment", out / "deployment-inputs")
    # Nothing is left to reclaim.
    assert reclaim_unreferenced(site.repository, keys).freed_bytes == 0


@pytest.mark.parametrize(
    "point", ["reclaim-shards-written", "reclaim-pointer-written", "reclaim-index-switched"]
)
def test_a_reclaim_interrupted_anywhere_keeps_every_kept_chunk(
    site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, point: str
) -> None:
    big = site.root / "stamp" / "deployment" / "big.bin"
    old = site.backup()
    old_content = big.read_bytes()
    big.write_bytes(os.urandom(700_000))
    kept = site.backup(days=1)
    keys = index_keys(site.repository, site.config)
    site.repository.prune([old.id])
    monkeypatch.setenv("BACKUPCTL_FAILPOINTS", f"{point}:error")
    with pytest.raises(UnreachableError):
        reclaim_unreferenced(site.repository, keys)
    monkeypatch.delenv("BACKUPCTL_FAILPOINTS")
    # A backup in between must not rely on a chunk the half-done reclaim is
    # deleting: the old content comes back, and is stored again.
    big.write_bytes(old_content)
    third = site.backup(days=2)
    reclaim_unreferenced(site.repository, keys)
    for record in (kept, third):
        assert not verify_backup(site.repository, record.id, site.ring, {}, tmp_path).damaged
    out = site.restore(third, tmp_path / "out")
    assert_same_tree(site.root / "stamp" / "deployment", out / "deployment-inputs")


def test_an_interrupted_backup_leaves_packs_that_reclaim_removes(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    site.backup()
    (site.root / "stamp" / "deployment" / "big.bin").write_bytes(os.urandom(700_000))
    packs_before = site.packs()
    monkeypatch.setenv("BACKUPCTL_FAILPOINTS", "before-manifest:error")
    with pytest.raises(UnreachableError):
        site.backup(days=1)
    monkeypatch.delenv("BACKUPCTL_FAILPOINTS")
    assert len(site.packs()) > len(packs_before)
    reclaim_unreferenced(site.repository, index_keys(site.repository, site.config))
    assert site.packs() == packs_before


def test_format_1_backups_stay_readable_after_an_upgrade(tmp_path: Path) -> None:
    site = Site(tmp_path)
    # A format 1 repository with one backup, then upgraded.
    site.storage = MemoryStorage("old")
    site.repository = Repository(site.storage, site.config.name)
    site.storage.ensure_root()
    site.repository.initialize(applied(site.config), T0)
    whole = site.backup()
    assert not any(s.chunked for s in whole.sources) and whole.wrapped_key is not None
    _key, record = new_index_key_record(None, site.config.encryption.certificate)
    site.repository.upgrade(record, T0)
    assert site.repository.format_version == 2
    chunked = site.backup(days=1)
    assert all(s.chunked for s in chunked.sources)
    for each in (whole, chunked):
        out = site.restore(replace(each), tmp_path / f"out-{each.id}")
        assert_same_tree(site.root / "stamp" / "deployment", out / "deployment-inputs")


def test_after_a_certificate_rotation_backups_restore_with_the_new_key_alone(
    site: Site, tmp_path: Path
) -> None:
    site.backup()
    cert, private = create_key_pair("ec-p256", "CN=new backups", 365, T0)
    rotated = replace(site.config, encryption=replace(site.config.encryption, certificate=cert))
    after = site.backup(days=1, config=rotated)
    # Chunks under the old certificate's data key are not reused: stored again.
    assert sum(s.added_bytes or 0 for s in after.sources) > 0
    new_only = KeyRing(
        (PrivateKey(private, cert.public_key_sha256, tmp_path / "new.pem", "EC P-256"),)
    )
    # The index key is wrapped to the old certificate only until key.rewrap:
    # the restore host also needs the new key to be able to unwrap it.
    index_record = site.repository.read_index_key()
    assert index_record is not None
    site.repository.write_index_key(
        replace(
            index_record,
            wrapped=(*index_record.wrapped, wrap_data_key(site.key.secret, cert)),
        )
    )
    keys = keys_for(site.repository, after, new_only, {})
    out = tmp_path / "out"
    restore_backup(site.repository, rotated, after, keys, RestoreRequest(out, (), False))
    assert_same_tree(site.root / "stamp" / "deployment", out / "deployment-inputs")


def test_a_run_that_adds_nothing_writes_no_data_key_and_reclaim_drops_unused_ones(
    site: Site,
) -> None:
    old = site.backup()
    keys_before = [k for k in site.object_keys() if k.startswith("keys/data/")]
    site.backup(days=1)
    assert [k for k in site.object_keys() if k.startswith("keys/data/")] == keys_before
    (site.root / "stamp" / "deployment" / "big.bin").write_bytes(os.urandom(700_000))
    site.backup(days=2)
    assert len([k for k in site.object_keys() if k.startswith("keys/data/")]) == 2
    # Every chunk of the first run is replaced or still used: prune everything
    # but the newest backup, and the first run's key stays only if still used.
    site.repository.prune([old.id])
    reclaim_unreferenced(site.repository, index_keys(site.repository, site.config))
    used = {
        e.key_id.hex()
        for e in site.repository.chunk_index(index_keys(site.repository, site.config)).entries()
    }
    assert {
        k.removeprefix("keys/data/").removesuffix(".json")
        for k in site.object_keys()
        if k.startswith("keys/data/")
    } == used


def test_reclaim_removes_a_pack_cut_short_by_a_killed_write(site: Site) -> None:
    site.backup()
    leftover = f"{PACKS_DIR}/0123456789abcdef0123456789abcdef.pack{TEMP_MARKER}4f2a"
    site.storage.write_atomic(leftover, b"half a pack")
    reclaim_unreferenced(site.repository, index_keys(site.repository, site.config))
    assert leftover not in site.object_keys()
    assert site.packs()  # the real pack stays


def test_a_damaged_pack_trailer_fails_the_full_verify_too(site: Site, tmp_path: Path) -> None:
    record = site.backup()
    (pack,) = site.packs()
    data = bytearray(site.storage.read(pack))
    data[-30] ^= 0x01  # in the trailer: records are intact, the table of contents is not
    site.storage.write_atomic(pack, bytes(data))
    keyless = verify_backup(site.repository, record.id, None, {}, tmp_path)
    full = verify_backup(site.repository, record.id, site.ring, {}, tmp_path)
    assert keyless.damaged and full.damaged
    assert "trailer" in full.problems[0]


def test_upgrading_while_migrating_takes_the_previous_locations_index_key(site: Site) -> None:
    target = Repository(MemoryStorage("target"), site.config.name)
    target.storage.ensure_root()
    target.initialize(applied(site.config), T0)
    context = ApplyContext(
        repository=target,
        config=site.config,
        now=T0,
        real_now=T0,
        credentials=None,
        previous_location=site.repository,
    )
    outcome = apply_plan(
        ConfigurationPlan(site.config.name, "target", T0, (UpgradeRepository("r", False, 0),)),
        context,
    )
    assert [o.status for o in outcome] == [OutcomeStatus.DONE]
    upgraded, previous = target.read_index_key(), site.repository.read_index_key()
    assert upgraded is not None and previous is not None
    assert upgraded.check == previous.check
