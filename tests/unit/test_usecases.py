"""The use cases (reconciler.usecases) on a real local repository, without the CLI.

A use case returns a report and prints nothing; the CLI tests (tests/e2e)
check how the reports are shown."""

from __future__ import annotations

import ast
import shutil
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from reconciler.backup.engine import run_backup
from reconciler.backup.verify import Verification, verdicts_of
from reconciler.crypto.keyring import KeyRing
from reconciler.crypto.keys import load_private_key
from reconciler.errors import BackupctlError
from reconciler.reconcile.prepared import prepare
from reconciler.repository.layout import LOCK_KEY
from reconciler.repository.lock import RepositoryLock, read_lock
from reconciler.repository.records import BackupRecord, BackupStatus, dumps
from reconciler.repository.store import Repository
from reconciler.spec import load_configurations
from reconciler.spec.model import BackupConfiguration
from reconciler.timeutil import format_time, now_utc
from reconciler.usecases import queries
from reconciler.usecases.unlock import UnlockOutcome, break_lock, find_lock
from reconciler.usecases.verify import verify_backups
from tests.plant import plant_catalog, plant_format

ROOT = Path(__file__).resolve().parents[2]
KEYS = ROOT / "examples" / "keys"
T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)

CONFIG = """\
apiVersion: backupctl/v1
kind: BackupConfiguration
metadata:
  name: region-west
spec:
  storage:
    local: {path: ./repository}
  encryption:
    certificate: {file: backup.cer}
  sources:
    - name: deployment-inputs
      files: {path: stamp}
"""


@pytest.fixture
def config(tmp_path: Path) -> BackupConfiguration:
    shutil.copy(KEYS / "demo-backup.cer", tmp_path / "backup.cer")
    (tmp_path / "stamp").mkdir()
    (tmp_path / "repository").mkdir()
    (tmp_path / "stamp" / "region.json").write_text('{"region": "west"}\n')
    (tmp_path / "region.yaml").write_text(textwrap.dedent(CONFIG), encoding="utf-8")
    [loaded] = load_configurations(tmp_path / "region.yaml")
    return loaded


def repository_of(config: BackupConfiguration) -> Repository:
    """The configuration's repository, created empty."""
    repository = prepare(config).repository
    repository.storage.ensure_root()
    plant_catalog(repository, ())
    plant_format(repository, T0)
    return repository


@pytest.fixture
def ring() -> KeyRing:
    return KeyRing((load_private_key(KEYS / "demo-backup.pem", None),))


def corrupt_backup(config: BackupConfiguration) -> tuple[Repository, BackupRecord]:
    """A repository holding one intact backup that an earlier check marked Corrupt."""
    repository = repository_of(config)
    record = run_backup(repository, config, T0, "scheduled")
    false_alarm = Verification(record.id, full=False, problems=("a flaky read",))
    repository.record_verdicts(verdicts_of([false_alarm]), T0)
    [listed] = repository.read_catalog().backups
    assert listed.status is BackupStatus.CORRUPT
    return repository, record


def test_a_full_check_clears_a_corrupt_mark_it_can_record(
    config: BackupConfiguration, ring: KeyRing
) -> None:
    repository, record = corrupt_backup(config)
    report = verify_backups([config], "all", ring)
    assert (report.checked, report.failed, report.ok) == (1, 0, True)
    [listed] = repository.read_catalog().backups
    assert listed.status is BackupStatus.SUCCEEDED and listed.verification_error is None
    assert repository.read_manifest(record.id).status is BackupStatus.SUCCEEDED


def test_a_corrupt_mark_a_full_check_cannot_record_stays_and_fails_the_check(
    config: BackupConfiguration, ring: KeyRing
) -> None:
    repository, record = corrupt_backup(config)
    with RepositoryLock(repository.storage, config.name, "backupctl daemon"):
        report = verify_backups([config], "all", ring)
    [done] = report.configurations
    assert done.locked_by is not None and "backupctl daemon" in done.locked_by
    assert done.still_corrupt == (record.id,)
    assert (report.checked, report.failed, report.ok) == (1, 1, False)
    [listed] = repository.read_catalog().backups
    assert listed.status is BackupStatus.CORRUPT


def test_latest_is_the_newest_succeeded_backup_not_a_newer_corrupt_one(
    config: BackupConfiguration,
) -> None:
    repository = repository_of(config)
    first = run_backup(repository, config, T0, "scheduled")
    second = run_backup(repository, config, T0 + timedelta(hours=1), "scheduled")
    assert queries.show_backup(config, "latest").id == second.id
    damaged = Verification(second.id, full=False, problems=("an object is missing",))
    repository.record_verdicts(verdicts_of([damaged]), T0)
    assert queries.show_backup(config, "latest").id == first.id


def test_a_selector_that_is_no_backup_id_is_refused_and_an_unknown_id_is_named(
    config: BackupConfiguration,
) -> None:
    repository_of(config)
    with pytest.raises(BackupctlError, match="is not a backup id"):
        queries.show_backup(config, "../../quickstart/settings")
    with pytest.raises(BackupctlError, match="has no backup 20200101T000000Z-000000"):
        queries.show_backup(config, "20200101T000000Z-000000")


def test_a_backup_id_asked_of_several_configurations_is_checked_where_it_is(
    config: BackupConfiguration, tmp_path: Path
) -> None:
    (tmp_path / "east").mkdir()
    east_yaml = CONFIG.replace("region-west", "region-east").replace("./repository", "./east")
    (tmp_path / "east.yaml").write_text(east_yaml, encoding="utf-8")
    [east] = load_configurations(tmp_path / "east.yaml")
    west_backup = run_backup(repository_of(config), config, T0, "scheduled")
    run_backup(repository_of(east), east, T0, "scheduled")
    found = verify_backups([config, east], west_backup.id, None)
    assert [len(c.checked) for c in found.configurations] == [1, 0]
    assert (found.found_nowhere, found.ok) == (False, True)
    nowhere = verify_backups([config, east], "20200101T000000Z-000000", None)
    assert (nowhere.checked, nowhere.errors, nowhere.found_nowhere, nowhere.ok) == (
        0,
        0,
        True,
        False,
    )


def lock_json(nonce: str, command: str) -> bytes:
    now = now_utc()
    return dumps(
        {
            "host": "elsewhere.invalid",
            "pid": 4242,
            "nonce": nonce,
            "command": command,
            "createdAt": format_time(now),
            "expiresAt": format_time(now + timedelta(minutes=5)),
        }
    )


def test_a_lock_that_changed_hands_after_it_was_shown_is_not_broken(
    config: BackupConfiguration,
) -> None:
    storage = repository_of(config).storage
    storage.write_atomic(LOCK_KEY, lock_json("0ld0ld", "backupctl apply"))
    found = find_lock(config)
    storage.write_atomic(LOCK_KEY, lock_json("n3wn3w", "backupctl daemon"))
    report = break_lock(found, "0ld0ld", force=False)
    assert report.outcome is UnlockOutcome.CHANGED_HANDS
    assert report.current is not None and report.current.nonce == "n3wn3w"
    holder = read_lock(storage)
    assert holder is not None and holder.nonce == "n3wn3w"


def test_a_lock_is_broken_only_with_its_nonce_or_force(config: BackupConfiguration) -> None:
    storage = repository_of(config).storage
    storage.write_atomic(LOCK_KEY, lock_json("0ld0ld", "backupctl apply"))
    found = find_lock(config)
    assert break_lock(found, "wrong", force=False).outcome is UnlockOutcome.WRONG_NONCE
    assert break_lock(found, None, force=False).outcome is UnlockOutcome.WRONG_NONCE
    assert read_lock(storage) is not None
    assert break_lock(found, None, force=True).outcome is UnlockOutcome.BROKEN
    assert read_lock(storage) is None
    assert break_lock(find_lock(config), None, False).outcome is UnlockOutcome.NOT_LOCKED


def imported_modules(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            modules.add(node.module)
    return modules


@pytest.mark.parametrize(
    "path", sorted((ROOT / "reconciler" / "usecases").glob("*.py")), ids=lambda p: p.name
)
def test_a_use_case_neither_prints_nor_depends_on_the_cli_or_the_daemon(path: Path) -> None:
    """The CLI and the daemon call the use cases; the reverse would make a cycle."""
    forbidden = {
        m
        for m in imported_modules(path)
        if m.split(".")[0] in ("click", "rich")
        or m.startswith(("reconciler.cli", "reconciler.daemon"))
    }
    assert not forbidden, f"{path.name} imports {sorted(forbidden)}"
    assert "print(" not in path.read_text(encoding="utf-8")
