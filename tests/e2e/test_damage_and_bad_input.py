"""Bad input, wrong keys and damaged backups: one clear sentence, exit 1, nothing lost."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from reconciler.crypto.keys import create_key_pair, private_key_pem
from reconciler.timeutil import now_utc
from tests.e2e.conftest import Runner, Workspace, assert_one_clear_error


def restore_args(workspace: Workspace, target: Path, key: Path | None = None) -> list[str | Path]:
    return [
        "restore",
        "-f",
        workspace.config,
        "--backup",
        "latest",
        "--key",
        key or workspace.private_key,
        "--to",
        target,
    ]


def stored_objects(workspace: Workspace) -> dict[str, Path]:
    """Every object one format 2 backup stored, by a name its errors use."""
    repository = workspace.repository
    [backup] = workspace.backup_dirs()
    [pack] = (repository / "packs").iterdir()
    [delta] = (repository / "index" / "deltas").iterdir()
    [data_key] = (repository / "keys" / "data").iterdir()
    found = {str(p.relative_to(repository)): p for p in sorted(backup.glob("*.chunks"))}
    assert len(found) == 5
    for path in (pack, delta, data_key):
        found[str(path.relative_to(repository))] = path
    # Its errors name it by key id: as keys/data/<id>.json or as data key <id>.
    found[data_key.stem] = found.pop(str(data_key.relative_to(repository)))
    return found


def flipped(path: Path, position: int) -> bytes:
    original = path.read_bytes()
    damaged = bytearray(original)
    damaged[position] ^= 0x01
    path.write_bytes(bytes(damaged))
    return original


def test_a_flipped_byte_in_any_stored_object_is_an_integrity_error(
    workspace: Workspace, run: Runner, tmp_path: Path
) -> None:
    assert run("apply", "-f", workspace.config).code == 0
    pack = next((workspace.repository / "packs").iterdir())
    for name, obj in stored_objects(workspace).items():
        size = obj.stat().st_size
        # A pack's header and trailer are not read by a restore (the index
        # says where each record is); positions inside its records are.
        spots = (50, size // 2) if obj == pack else (0, 50, size // 2, size - 1)
        for position in spots:
            original = flipped(obj, position)
            target = tmp_path / f"r-{obj.name}-{position}"
            result = run(*restore_args(workspace, target))
            assert_one_clear_error(result, name)
            assert not target.exists() or not any(
                p for p in target.iterdir() if not p.name.startswith(".")
            ), "nothing half-restored may look complete"
            obj.write_bytes(original)


def test_a_damaged_stored_index_key_stops_a_backup_before_it_stores_anything(
    workspace: Workspace, run: Runner
) -> None:
    assert run("apply", "-f", workspace.config, "--now", "2026-11-01T00:00:00Z").code == 0
    record = workspace.repository / "keys" / "index.json"
    text = record.read_text()
    stored = json.loads(text)["storedKey"]
    changed = ("B" if stored[0] != "B" else "C") + stored[1:]
    record.write_text(text.replace(stored, changed))
    packs = sorted((workspace.repository / "packs").iterdir())
    result = run("apply", "-f", workspace.config, "--now", "2026-11-02T00:00:00Z")
    assert_one_clear_error(result, "index key record", "damaged")
    assert sorted((workspace.repository / "packs").iterdir()) == packs
    assert len(workspace.backup_dirs()) == 1


def test_a_truncated_object_is_an_integrity_error(
    workspace: Workspace, run: Runner, tmp_path: Path
) -> None:
    assert run("apply", "-f", workspace.config).code == 0
    objects = stored_objects(workspace)
    pack = next((workspace.repository / "packs").iterdir())
    for name in ("backups", "index/deltas", "packs"):
        label, obj = next((k, v) for k, v in objects.items() if k.startswith(name))
        data = obj.read_bytes()
        # A pack cut short loses its last records' bytes (its trailer is
        # what a restore does not read); the others lose anything.
        cuts = (len(data) // 3, 10) if obj == pack else (len(data) - 1, len(data) - 17, 45, 10)
        for cut in cuts:
            obj.write_bytes(data[:cut])
            result = run(*restore_args(workspace, tmp_path / f"r{cut}"))
            assert_one_clear_error(result, label)
        obj.write_bytes(data)


def test_wrong_private_key_names_both_thumbprints(
    workspace: Workspace, run: Runner, tmp_path: Path
) -> None:
    assert run("apply", "-f", workspace.config).code == 0
    _cert, other = create_key_pair("rsa-3072", "CN=someone else", 30, now_utc())
    wrong = tmp_path / "wrong.pem"
    wrong.write_bytes(private_key_pem(other, None))
    result = run(*restore_args(workspace, tmp_path / "r", key=wrong))
    listing = json.loads(run("backups", "list", "-f", workspace.config, "--output", "json").out)
    thumbprint = listing["backups"][0]["keyThumbprint"]
    assert_one_clear_error(result, thumbprint, str(wrong))
    assert not (tmp_path / "r").exists()


def test_invalid_configuration_names_file_line_and_field(workspace: Workspace, run: Runner) -> None:
    text = workspace.config.read_text().replace("days: 7", "days: -1")
    text = text.replace("minBackups: 2", "minBackups: 2\n    colour: blue")
    workspace.config.write_text(text)
    lines = text.splitlines()
    days_line = next(i for i, line in enumerate(lines, 1) if "days: -1" in line)
    result = run("validate", "-f", workspace.config)
    assert_one_clear_error(
        result,
        f"quickstart.yaml:{days_line}: spec.retention.days: -1 is less than the minimum of 1",
        "unknown field 'colour'",
    )
    assert run("apply", "-f", workspace.config).code == 1
    assert not workspace.repository.exists()


def test_a_literal_secret_is_refused_without_echoing_it(workspace: Workspace, run: Runner) -> None:
    config = workspace.examples / "smb.yaml"
    config.write_text(config.read_text().replace("{env: BACKUP_SMB_PASSWORD}", "Sup3rS3cret!"))
    result = run("validate", "-f", config)
    assert_one_clear_error(result, "spec.storage.smb.password", "literal secret")
    assert "Sup3rS3cret!" not in result.text


def test_missing_certificate_and_private_key_in_certificate_are_refused(
    workspace: Workspace, run: Runner
) -> None:
    cert = workspace.examples / "keys" / "demo-backup.cer"
    key = workspace.examples / "keys" / "demo-backup.pem"
    cert.write_bytes(cert.read_bytes() + key.read_bytes())
    assert_one_clear_error(
        run("validate", "-f", workspace.config), "spec.encryption.certificate.file", "private key"
    )
    cert.unlink()
    assert_one_clear_error(
        run("validate", "-f", workspace.config), "demo-backup.cer", "does not exist"
    )


def test_folder_without_configuration_is_an_error(run: Runner, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_one_clear_error(run("validate", "-f", empty), str(empty))
    (empty / "other.yaml").write_text("# nothing here\n")
    assert_one_clear_error(run("validate", "-f", empty), "no BackupConfiguration")


def test_storage_path_that_is_a_file_fails_clearly(workspace: Workspace, run: Runner) -> None:
    (workspace.root / ".backups").rmdir()
    (workspace.root / ".backups").write_text("not a folder")
    result = run("apply", "-f", workspace.config)
    assert_one_clear_error(result, ".backups", "not a folder")


def test_missing_storage_location_is_not_created(workspace: Workspace, run: Runner) -> None:
    """An unmounted backup disk must not silently become a folder on the root disk."""
    (workspace.root / ".backups").rmdir()
    result = run("apply", "-f", workspace.config)
    assert_one_clear_error(result, ".backups", "does not exist")
    assert not (workspace.root / ".backups").exists()


def test_unreadable_source_makes_the_backup_partial_and_names_it(
    workspace: Workspace, run: Runner
) -> None:
    shutil.rmtree(workspace.examples / "stamp" / "identity")
    result = run("apply", "-f", workspace.config)
    assert result.code == 1
    assert "Traceback" not in result.text
    assert "identity" in result.err and "does not exist" in result.err
    listing = json.loads(run("backups", "list", "-f", workspace.config, "--output", "json").out)
    [backup] = listing["backups"]
    assert backup["status"] == "PartiallySucceeded"
    failed = [s for s in backup["sources"] if s["status"] == "Failed"]
    assert [s["name"] for s in failed] == ["identity"]


def _mount_tmpfs(path: Path, size: str, readonly: bool = False) -> None:
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if readonly else "")
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("CI runs as root so that storage-full tests can mount a tmpfs")
        pytest.skip("mounting a small tmpfs needs root")
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], check=True)


def test_full_storage_fails_clearly_and_keeps_earlier_backups(
    workspace: Workspace, run: Runner
) -> None:
    backups = workspace.root / ".backups"
    _mount_tmpfs(backups, "200k")
    try:
        assert run("apply", "-f", workspace.config).code == 0
        big = workspace.examples / "stamp" / "deployment" / "blob.bin"
        big.write_bytes(os.urandom(400_000))
        result = run("apply", "-f", workspace.config, "--now", "2099-01-01T00:00:00Z")
        assert_one_clear_error(result, "no space left")
        listing = json.loads(run("backups", "list", "-f", workspace.config, "--output", "json").out)
        assert [b["status"] for b in listing["backups"]] == ["Succeeded"]
        big.unlink()
        retry = run("apply", "-f", workspace.config, "--now", "2099-01-01T00:00:00Z")
        assert retry.code == 0, retry.text
    finally:
        subprocess.run(["umount", str(backups)], check=False)


def test_read_only_storage_fails_clearly(workspace: Workspace, run: Runner) -> None:
    backups = workspace.root / ".backups"
    _mount_tmpfs(backups, "1m", readonly=True)
    try:
        result = run("apply", "-f", workspace.config)
        assert_one_clear_error(result, "read-only")
    finally:
        subprocess.run(["umount", str(backups)], check=False)
