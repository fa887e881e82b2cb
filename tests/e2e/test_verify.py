"""``backupctl verify`` and periodic verification, run as an operator would."""

from __future__ import annotations

import json
from pathlib import Path

from reconciler.reconcile.prepared import prepare
from reconciler.repository.lock import RepositoryLock
from reconciler.spec import load_configurations
from tests.e2e.conftest import Result, Runner, Workspace, assert_one_clear_error
from tests.e2e.test_keys_rotation import at, backups, create_keys, use_encryption
from tests.e2e.test_quickstart import tree_snapshot


def verify(run: Runner, workspace: Workspace, *args: str | Path, **kw: object) -> Result:
    return run("verify", "-f", workspace.config, *args, **kw)


def with_key(workspace: Workspace) -> tuple[str, Path]:
    return ("--key", workspace.private_key)


def test_verify_without_and_with_the_key_catches_a_single_flipped_byte_anywhere_in_any_object(
    workspace: Workspace, run: Runner
) -> None:
    assert run("apply", "-f", workspace.config).code == 0
    [backup] = workspace.backup_dirs()
    repository = workspace.repository
    [pack] = (repository / "packs").iterdir()
    [delta] = (repository / "index" / "deltas").iterdir()
    objects = [*sorted(backup.glob("*.chunks")), delta, pack]
    assert len(objects) == 7
    records = {p: p.read_bytes() for p in (backup / "manifest.json", repository / "catalog.json")}
    assert verify(run, workspace).code == 0
    assert verify(run, workspace, *with_key(workspace)).code == 0
    for obj in objects:
        original = obj.read_bytes()
        size = len(original)
        # Both read every record of a pack; its header and trailer only the
        # keyless verify reads (see below).
        for position in (50, size // 2) if obj == pack else (0, 50, size // 2, size - 1):
            damaged = bytearray(original)
            damaged[position] ^= 0x01
            obj.write_bytes(bytes(damaged))
            for depth in ((), with_key(workspace)):
                result = verify(run, workspace, *depth)
                assert_one_clear_error(result, str(obj.relative_to(repository)))
                assert "1 failed" in result.out
                for path, data in records.items():
                    path.write_bytes(data)  # undo the Corrupt mark before the next check
        obj.write_bytes(original)
    for position in (0, len(records) and pack.stat().st_size - 1):
        original = pack.read_bytes()
        damaged = bytearray(original)
        damaged[position] ^= 0x01
        pack.write_bytes(bytes(damaged))
        assert_one_clear_error(verify(run, workspace), str(pack.relative_to(repository)))
        for path, data in records.items():
            path.write_bytes(data)
        pack.write_bytes(original)
    assert verify(run, workspace, *with_key(workspace)).code == 0


def test_a_damaged_backup_stays_corrupt_until_a_full_verify_proves_it_intact_again(
    workspace: Workspace, run: Runner
) -> None:
    assert run("apply", "-f", workspace.config).code == 0
    [backup] = workspace.backup_dirs()
    obj = backup / "resource-manager.sqlite.chunks"
    original = obj.read_bytes()
    obj.write_bytes(original[:-1] + bytes([original[-1] ^ 0xFF]))
    found = verify(run, workspace)
    assert_one_clear_error(found, obj.name, "damaged")
    [listed] = backups(run, workspace)
    assert listed["status"] == "Corrupt"
    manifest = json.loads((backup / "manifest.json").read_text())
    assert manifest["status"] == "Corrupt"
    assert obj.name in manifest["verificationError"]
    assert manifest["verifiedAt"] is not None

    obj.write_bytes(original)  # the object is put back from a copy
    keyless = verify(run, workspace)
    assert_one_clear_error(keyless, "stays Corrupt", "--key")
    assert backups(run, workspace)[0]["status"] == "Corrupt"
    no_latest = run(
        "restore", "-f", workspace.config, "--backup", "latest", *with_key(workspace),
        "--to", workspace.root / "r",
    )  # fmt: skip
    assert_one_clear_error(no_latest, "no Succeeded backup")
    full = verify(run, workspace, *with_key(workspace))
    assert full.code == 0, full.text
    assert backups(run, workspace)[0]["status"] == "Succeeded"
    assert json.loads((backup / "manifest.json").read_text())["verificationError"] is None


def test_periodic_verification_marks_damage_corrupt_and_retention_keeps_an_intact_backup(
    workspace: Workspace, run: Runner
) -> None:
    text = workspace.config.read_text(encoding="utf-8")
    workspace.config.write_text(
        text.replace('  trigger: ""\n', '  trigger: ""\n  verification:\n    frequencyDays: 7\n'),
        encoding="utf-8",
    )
    assert run("apply", "-f", workspace.config, "--now", at(0)).code == 0
    assert run("apply", "-f", workspace.config, "--now", at(13)).code == 0
    oldest, newer = (str(b["id"]) for b in backups(run, workspace))
    damaged = workspace.repository / "backups" / newer / "key-vault.command.chunks"
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0x10
    damaged.write_bytes(bytes(data))

    plan = run("plan", "-f", workspace.config, "--now", at(8 * 24), "--output", "json")
    actions = {a["action"]: a for a in json.loads(plan.out)["configurations"][0]["actions"]}
    assert list(actions) == ["backup.run", "backup.verify", "backup.prune", "chunks.reclaim"]
    assert [b["id"] for b in actions["backup.verify"]["backups"]] == [newer]
    assert [b["id"] for b in actions["backup.prune"]["backups"]] == [oldest]

    applied = run("apply", "-f", workspace.config, "--now", at(8 * 24))
    assert_one_clear_error(applied, "backup.verify: failed", newer, damaged.name)
    statuses = {b["id"]: b["status"] for b in backups(run, workspace)}
    assert statuses[newer] == "Corrupt"
    assert statuses[oldest] == "Succeeded", (
        "with the newer backup Corrupt, the older intact one is among the 2 kept"
    )
    assert len(statuses) == 3
    # Next: the older backup, no longer pruned, is due for its check, and the
    # Corrupt one, never counted as kept, is pruned once older than 7 days.
    later = run("plan", "-f", workspace.config, "--now", at(8 * 24), "--output", "json")
    actions = {a["action"]: a for a in json.loads(later.out)["configurations"][0]["actions"]}
    assert [b["id"] for b in actions["backup.verify"]["backups"]] == [oldest]
    assert [b["id"] for b in actions["backup.prune"]["backups"]] == [newer]
    assert run("apply", "-f", workspace.config, "--now", at(8 * 24)).code == 0
    quiet = run("plan", "-f", workspace.config, "--now", at(8 * 24), "--detailed-exitcode")
    assert quiet.code == 0, quiet.text


def test_verify_with_a_key_of_another_certificate_names_the_one_needed_and_damages_nothing(
    workspace: Workspace, run: Runner
) -> None:
    assert run("apply", "-f", workspace.config).code == 0
    _cert, other_key = create_keys(run, workspace, "other", "--algorithm", "ec-p256")
    [entry] = backups(run, workspace)
    result = verify(run, workspace, "--key", other_key)
    assert_one_clear_error(result, f"certificate {entry['keyThumbprint']}", "--key")
    assert backups(run, workspace)[0]["status"] == "Succeeded"


def data_files(workspace: Workspace) -> dict[str, tuple[str, int, int, bytes | str | None]]:
    """The repository's files other than its JSON records (manifests, catalog, settings)."""
    return {
        k: v
        for k, v in tree_snapshot(workspace.repository).items()
        if v[0] == "file" and not k.endswith(".json")
    }


def test_verify_reads_everything_and_writes_nothing_but_its_record(
    workspace: Workspace, run: Runner, tmp_path: Path
) -> None:
    assert run("apply", "-f", workspace.config).code == 0
    temp = tmp_path / "tmp"
    temp.mkdir()
    examples = tree_snapshot(workspace.examples)
    data = data_files(workspace)
    result = verify(run, workspace, *with_key(workspace), env={"TMPDIR": str(temp)})
    assert result.code == 0, result.text
    assert "5 objects: decrypted and read" in result.out
    assert list(temp.iterdir()) == [], "the private work folder is removed"
    assert tree_snapshot(workspace.examples) == examples
    assert data_files(workspace) == data
    [listed] = json.loads((workspace.repository / "catalog.json").read_text())["backups"]
    assert listed["verifiedAt"] is not None and listed["verificationError"] is None


def test_verify_selects_one_backup_the_latest_or_all(workspace: Workspace, run: Runner) -> None:
    assert run("apply", "-f", workspace.config, "--now", at(0)).code == 0
    assert run("apply", "-f", workspace.config, "--now", at(13)).code == 0
    first, second = (str(b["id"]) for b in backups(run, workspace))
    everything = verify(run, workspace)
    assert everything.code == 0 and first in everything.out and second in everything.out
    latest = verify(run, workspace, "--backup", "latest")
    assert second in latest.out and first not in latest.out
    one = verify(run, workspace, "--backup", first)
    assert first in one.out and second not in one.out
    unknown = verify(run, workspace, "--backup", "20200101T000000Z-000000")
    assert_one_clear_error(unknown, "20200101T000000Z-000000")
    outside = verify(run, workspace, "--backup", "../../quickstart/settings")
    assert_one_clear_error(outside, "is not a backup id")


def test_verify_of_a_locked_repository_reports_but_does_not_record(
    workspace: Workspace, run: Runner
) -> None:
    assert run("apply", "-f", workspace.config).code == 0
    catalog = (workspace.repository / "catalog.json").read_bytes()
    [config] = load_configurations(workspace.config)
    storage = prepare(config).repository.storage
    with RepositoryLock(storage, config.name, "backupctl daemon"):
        result = verify(run, workspace)
    assert result.code == 0, result.text
    assert "not recorded" in result.err and "backupctl daemon" in result.err
    assert (workspace.repository / "catalog.json").read_bytes() == catalog


def test_verify_after_a_rotation_takes_each_backups_key_from_a_key_folder(
    workspace: Workspace, run: Runner, tmp_path: Path
) -> None:
    assert run("apply", "-f", workspace.config, "--now", at(0)).code == 0
    new_cert, new_key = create_keys(run, workspace, "new", "--algorithm", "ec-p256")
    use_encryption(workspace, new_cert)
    assert run("apply", "-f", workspace.config, "--now", at(13)).code == 0
    ring = tmp_path / "ring"
    ring.mkdir()
    for key in (workspace.private_key, new_key):
        (ring / key.name).write_bytes(key.read_bytes())
    result = verify(run, workspace, "--key-dir", ring)
    assert result.code == 0, result.text
    assert "2 intact, 0 failed" in result.out
