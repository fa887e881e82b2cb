"""Verifying stored backups (reconciler.backup.verify) on in-memory storage.

The backup is real (a file tree, an SQLite database and a command's output,
compressed and encrypted); every single byte of every stored object is flipped
in turn, and both depths of verification must name the damaged object.
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
import textwrap
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from reconciler.backup.engine import run_backup
from reconciler.backup.verify import verdicts_of, verify_backup
from reconciler.crypto.keyring import KeyRing
from reconciler.crypto.keys import load_private_key
from reconciler.repository.layout import object_key
from reconciler.repository.records import BackupRecord, BackupStatus, StoredObject
from reconciler.repository.store import Repository
from reconciler.spec import load_configurations
from reconciler.storage.memory import MemoryStorage
from tests.plant import plant_catalog, plant_format, plant_manifest

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


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> tuple[Repository, BackupRecord]:
    """One committed backup in a format 1 MemoryStorage repository (whole objects:
    format 2's chunks and packs are checked in test_format2_repository)."""
    root = tmp_path_factory.mktemp("region")
    shutil.copy(KEYS / "demo-backup.cer", root / "backup.cer")
    (root / "stamp" / "deployment").mkdir(parents=True)
    (root / "stamp" / "deployment" / "region.json").write_text('{"region": "west"}\n')
    with sqlite3.connect(root / "stamp" / "arm.db") as db:
        db.execute("create table plans (name text)")
        db.execute("insert into plans values ('gold')")
    db.close()
    (root / "region.yaml").write_text(textwrap.dedent(CONFIG), encoding="utf-8")
    [config] = load_configurations(root / "region.yaml")
    repository = Repository(MemoryStorage("region"), config.name)
    repository.storage.ensure_root()
    plant_format(repository, T0)
    record = run_backup(repository, config, T0, "scheduled")
    assert record.status is BackupStatus.SUCCEEDED
    return repository, record


@pytest.fixture(scope="module")
def ring() -> KeyRing:
    return KeyRing((load_private_key(KEYS / "demo-backup.pem", None),))


def verdicts(
    repository: Repository, backup_id: str, ring: KeyRing, work: Path
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The problems found without and with the key."""
    keyless = verify_backup(repository, backup_id, None, {}, work)
    full = verify_backup(repository, backup_id, ring, {}, work)
    assert keyless.not_checked is None and full.not_checked is None
    return keyless.problems, full.problems


def test_an_intact_backup_passes_both_depths(
    stored: tuple[Repository, BackupRecord], ring: KeyRing, tmp_path: Path
) -> None:
    repository, record = stored
    assert verdicts(repository, record.id, ring, tmp_path) == ((), ())
    full = verify_backup(repository, record.id, ring, {}, tmp_path)
    assert (full.intact, full.full, full.objects) == (True, True, 3)
    assert list(tmp_path.iterdir()) == [], "a drill leaves nothing behind"


def test_every_flipped_byte_of_every_object_is_caught_with_and_without_the_key(
    stored: tuple[Repository, BackupRecord], ring: KeyRing, tmp_path: Path
) -> None:
    repository, record = stored
    storage = repository.storage
    for source in record.sources:
        assert source.object is not None
        key = object_key(record.id, source.object.name)
        original = storage.read(key)
        for position in range(len(original)):
            damaged = bytearray(original)
            damaged[position] ^= 0x80
            storage.write_atomic(key, bytes(damaged))
            keyless, full = verdicts(repository, record.id, ring, tmp_path)
            assert len(keyless) == 1 and key in keyless[0], (position, keyless)
            assert len(full) == 1 and key in full[0], (position, full)
        storage.write_atomic(key, original)


def test_with_the_key_damage_is_caught_even_when_the_manifest_checksum_was_made_to_match(
    stored: tuple[Repository, BackupRecord], ring: KeyRing, tmp_path: Path
) -> None:
    repository, record = stored
    storage = repository.storage
    source = record.sources[0]
    assert source.object is not None
    key = object_key(record.id, source.object.name)
    original = storage.read(key)
    manifest = repository.read_manifest(record.id)
    try:
        for position in range(0, len(original), 7):
            damaged = bytearray(original)
            damaged[position] ^= 0x01
            storage.write_atomic(key, bytes(damaged))
            forged = StoredObject(
                source.object.name, len(damaged), hashlib.sha256(damaged).hexdigest()
            )
            sources = (replace(source, object=forged), *record.sources[1:])
            plant_manifest(repository, replace(manifest, sources=sources))
            keyless, full = verdicts(repository, record.id, ring, tmp_path)
            assert keyless == (), "the checksums match, so a keyless check cannot see it"
            assert len(full) == 1 and key in full[0], (position, full)
    finally:
        storage.write_atomic(key, original)
        plant_manifest(repository, manifest)


def test_a_source_of_a_kind_this_version_does_not_know_is_read_through_as_a_stream(
    stored: tuple[Repository, BackupRecord], ring: KeyRing, tmp_path: Path
) -> None:
    """A manifest may name a kind of source this version lacks (a newer one
    wrote it): its object is still decrypted and read to its end, as a
    command's dump is, and an intact one passes."""
    repository, record = stored
    manifest = repository.read_manifest(record.id)
    dump = manifest.sources[2]
    assert dump.kind == "command"
    sources = (*manifest.sources[:2], replace(dump, kind="postgres"))
    try:
        plant_manifest(repository, replace(manifest, sources=sources))
        assert verdicts(repository, record.id, ring, tmp_path) == ((), ())
    finally:
        plant_manifest(repository, manifest)


def test_a_missing_object_or_manifest_is_damage(
    stored: tuple[Repository, BackupRecord], ring: KeyRing, tmp_path: Path
) -> None:
    repository, record = stored
    storage = repository.storage
    assert record.sources[2].object is not None
    key = object_key(record.id, record.sources[2].object.name)
    original = storage.read(key)
    storage.delete(key)
    try:
        keyless, full = verdicts(repository, record.id, ring, tmp_path)
        assert keyless == full == (f"{key} is missing",)
    finally:
        storage.write_atomic(key, original)
    missing = verify_backup(repository, "20261120T000000Z-000000", None, {}, tmp_path)
    assert missing.problems == ("its manifest is missing",)


def test_recording_marks_damage_corrupt_and_only_an_intact_full_check_clears_it(
    tmp_path: Path, stored: tuple[Repository, BackupRecord], ring: KeyRing
) -> None:
    repository, record = stored
    manifest = repository.read_manifest(record.id)
    catalog = repository.read_catalog()
    try:
        damaged = replace(
            verify_backup(repository, record.id, None, {}, tmp_path), problems=("x is damaged",)
        )
        repository.record_verdicts(verdicts_of([damaged]), T0)
        after = repository.read_manifest(record.id)
        assert (after.status, after.verification_error, after.verified_at) == (
            BackupStatus.CORRUPT,
            "x is damaged",
            T0,
        )
        assert repository.read_catalog().backups[0].status is BackupStatus.CORRUPT
        keyless = verify_backup(repository, record.id, None, {}, tmp_path)
        repository.record_verdicts(verdicts_of([keyless]), T0)
        assert repository.read_manifest(record.id).status is BackupStatus.CORRUPT
        full = verify_backup(repository, record.id, ring, {}, tmp_path)
        repository.record_verdicts(verdicts_of([full]), T0)
        cleared = repository.read_manifest(record.id)
        assert (cleared.status, cleared.verification_error) == (BackupStatus.SUCCEEDED, None)
        assert repository.read_catalog().backups[0].status is BackupStatus.SUCCEEDED
    finally:
        plant_manifest(repository, manifest)
        plant_catalog(repository, catalog.backups)
