"""Encryption keys as a new user meets them: create, back up, rotate, rewrap, key rings, expiry.

Every step runs the installed ``backupctl`` in a subprocess; the repository is
inspected only through its files, as an operator browsing the share would.
"""

from __future__ import annotations

import hashlib
import json
import re
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from reconciler.crypto.keys import (
    certificate_bytes,
    create_key_pair,
    load_private_key,
    private_key_pem,
)
from tests.e2e.conftest import Result, Runner, Workspace, assert_one_clear_error
from tests.e2e.region import Region
from tests.e2e.test_daemon import address, get, sample
from tests.e2e.test_quickstart import tree_snapshot

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def at(hours: float) -> str:
    """``--now`` value ``hours`` after T0."""
    return (T0 + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")


def thumbprint_of_file(cert: Path) -> str:
    """The thumbprint as any X.509 tool computes it: SHA-1 of the DER certificate."""
    data = cert.read_bytes()
    parsed = (
        x509.load_pem_x509_certificate(data)
        if b"-----BEGIN" in data
        else x509.load_der_x509_certificate(data)
    )
    der = parsed.public_bytes(serialization.Encoding.DER)
    return hashlib.sha1(der, usedforsecurity=False).hexdigest().upper()


def create_keys(
    run: Runner,
    workspace: Workspace,
    name: str,
    *extra: str,
    env: dict[str, str] | None = None,
) -> tuple[Path, Path]:
    """``backupctl keys create`` into examples/keys/; returns (certificate, private key)."""
    cert = workspace.examples / "keys" / f"{name}.cer"
    key = workspace.examples / "keys" / f"{name}.pem"
    result = run("keys", "create", "--cert", cert, "--key", key, *extra, env=env)
    assert result.code == 0, result.text
    return cert, key


def use_encryption(
    workspace: Workspace,
    cert: Path,
    rewrap: bool = False,
    previous: tuple[tuple[Path, str | None], ...] = (),
) -> None:
    """Point the quickstart configuration's spec.encryption at ``cert`` (and previous keys)."""
    lines = [f"    certificate: {{file: {cert}}}"]
    if rewrap:
        lines.append("    rewrapExisting: true")
    if previous:
        lines.append("    previousKeys:")
        for key, passphrase_env in previous:
            lines.append(f"      - key: {{file: {key}}}")
            if passphrase_env:
                lines.append(f"        passphrase: {{env: {passphrase_env}}}")
    text = workspace.config.read_text(encoding="utf-8")
    block = re.compile(
        r"    certificate: \{file: [^}]+\}\n(    (rewrapExisting|previousKeys).*\n(      .*\n)*)*"
    )
    text, count = block.subn("\n".join(lines) + "\n", text)
    assert count == 1
    workspace.config.write_text(text, encoding="utf-8")


def backups(run: Runner, workspace: Workspace) -> list[dict[str, object]]:
    listing = run("backups", "list", "-f", workspace.config, "--output", "json")
    assert listing.code == 0, listing.text
    result: list[dict[str, object]] = json.loads(listing.out)["backups"]
    return result


def restore(
    run: Runner, workspace: Workspace, backup_id: str, target: Path, *keys: str | Path
) -> Result:
    return run("restore", "-f", workspace.config, "--backup", backup_id, *keys, "--to", target)


def data_objects(workspace: Workspace) -> dict[str, tuple[bytes, int, int]]:
    """Every object holding data (packs, chunk lists, index runs): its bytes, mtime
    and inode (a rewrite changes one of them)."""
    repository = workspace.repository
    found = [
        *repository.glob("packs/*.pack"),
        *repository.glob("backups/*/*.chunks"),
        *repository.glob("index/**/*.idx"),
    ]
    assert found, "no data object found"
    return {
        str(p.relative_to(repository)): (p.read_bytes(), p.stat().st_mtime_ns, p.stat().st_ino)
        for p in sorted(found)
    }


def key_records_wrapped_to(workspace: Workspace) -> set[str]:
    """The certificates the index key and every data key record are wrapped to."""
    keys = workspace.repository / "keys"
    records = [keys / "index.json", *sorted((keys / "data").glob("*.json"))]
    return {
        wrapped["thumbprint"]
        for path in records
        for wrapped in json.loads(path.read_text())["wrappedKeys"]
    }


# ------------------------------------------------------------------ keys create


def test_keys_create_writes_a_public_certificate_and_a_private_key_only_its_owner_reads(
    workspace: Workspace, run: Runner
) -> None:
    cert = workspace.examples / "keys" / "region.cer"
    key = workspace.examples / "keys" / "region.pem"
    result = run(
        "keys", "create", "--cert", cert, "--key", key,
        "--days", "400", "--subject", "CN=region-west backups", "--algorithm", "ec-p384",
    )  # fmt: skip
    assert result.code == 0, result.text
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" not in cert.read_bytes()
    assert b"-----BEGIN PRIVATE KEY-----" in key.read_bytes(), "PKCS#8, unencrypted"
    parsed = x509.load_pem_x509_certificate(cert.read_bytes())
    assert parsed.subject.rfc4514_string() == "CN=region-west backups"
    assert parsed.not_valid_after_utc - parsed.not_valid_before_utc >= timedelta(days=400)
    assert thumbprint_of_file(cert) in result.out
    assert "spec.encryption.certificate" in result.out, "says what to do with the certificate"
    assert "offline" in result.out, "says what to do with the private key"
    use_encryption(workspace, cert)
    assert run("validate", "-f", workspace.config).code == 0


def test_keys_create_with_a_passphrase_encrypts_the_key_and_der_writes_a_binary_certificate(
    workspace: Workspace, run: Runner
) -> None:
    env = {"NEW_KEY_PASSPHRASE": "correct horse battery staple"}
    cert = workspace.examples / "keys" / "region.der"
    key = workspace.examples / "keys" / "region.pem"
    result = run(
        "keys", "create", "--cert", cert, "--key", key, "--der",
        "--passphrase-env", "NEW_KEY_PASSPHRASE", env=env,
    )  # fmt: skip
    assert result.code == 0, result.text
    assert b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in key.read_bytes()
    assert not cert.read_bytes().startswith(b"-----")
    assert thumbprint_of_file(cert) in result.out
    again = run("keys", "create", "--cert", workspace.examples / "keys" / "x.cer", "--key", key)
    assert_one_clear_error(again, str(key), "already exists")


# ------------------------------------------------------------------ rotation and rewrap


def test_rotate_then_rewrap_moves_the_old_backup_to_the_new_key_without_rewriting_data(
    workspace: Workspace, run: Runner, tmp_path: Path
) -> None:
    old_cert, old_key = create_keys(run, workspace, "backup-2026")
    use_encryption(workspace, old_cert)
    assert run("apply", "-f", workspace.config, "--now", at(0)).code == 0
    old_thumbprint = thumbprint_of_file(old_cert)

    new_cert, new_key = create_keys(run, workspace, "backup-2027", "--algorithm", "ec-p256")
    new_thumbprint = thumbprint_of_file(new_cert)
    use_encryption(workspace, new_cert)
    plan = run("plan", "-f", workspace.config, "--now", at(13), "--output", "json")
    assert plan.code == 0, plan.text
    [rotate] = [
        a
        for a in json.loads(plan.out)["configurations"][0]["actions"]
        if a["action"] == "key.rotate"
    ]
    assert (rotate["fromThumbprint"], rotate["toThumbprint"], rotate["backupsOnOldKey"]) == (
        old_thumbprint,
        new_thumbprint,
        1,
    )
    assert run("apply", "-f", workspace.config, "--now", at(13)).code == 0
    first, second = backups(run, workspace)
    assert (first["keyThumbprint"], second["keyThumbprint"]) == (old_thumbprint, new_thumbprint)
    history = json.loads((workspace.repository / "settings.json").read_text())["keyHistory"]
    assert [(k["thumbprint"], k["retiredAt"] is None) for k in history] == [
        (old_thumbprint, False),
        (new_thumbprint, True),
    ]

    # The old backup needs the old key, and says which one.
    refused = restore(run, workspace, str(first["id"]), tmp_path / "r0", "--key", new_key)
    assert_one_clear_error(refused, old_thumbprint, "--key")
    restored = restore(run, workspace, str(first["id"]), tmp_path / "r1", "--key", old_key)
    assert restored.code == 0, restored.text
    stamp_ca = workspace.examples / "stamp" / "ca"
    assert tree_snapshot(tmp_path / "r1" / "root-ca") == tree_snapshot(stamp_ca)

    # rewrapExisting with the old key moves it to the new certificate.
    use_encryption(workspace, new_cert, rewrap=True, previous=((old_key, None),))
    before = data_objects(workspace)
    plan = run("plan", "-f", workspace.config, "--now", at(14))
    assert plan.code == 0, plan.text
    assert "key.rewrap" in plan.out
    assert f"{first['id']}: {old_thumbprint} -> {new_thumbprint}" in plan.out
    applied = run("apply", "-f", workspace.config, "--now", at(14))
    assert applied.code == 0, applied.text
    assert "key.rewrap: done" in applied.out
    assert data_objects(workspace) == before, "rewrap must not rewrite any data object"
    assert [b["keyThumbprint"] for b in backups(run, workspace)] == [new_thumbprint] * 2
    manifest = json.loads(
        (workspace.repository / "backups" / str(first["id"]) / "manifest.json").read_text()
    )
    assert manifest["keyThumbprint"] == new_thumbprint
    assert key_records_wrapped_to(workspace) == {new_thumbprint}
    again = run("plan", "-f", workspace.config, "--now", at(14), "--detailed-exitcode")
    assert again.code == 0, again.text

    # Now the new key alone restores it, and the old key is no longer the one.
    restored = restore(run, workspace, str(first["id"]), tmp_path / "r2", "--key", new_key)
    assert restored.code == 0, restored.text
    assert tree_snapshot(tmp_path / "r2" / "root-ca") == tree_snapshot(stamp_ca)
    refused = restore(run, workspace, str(first["id"]), tmp_path / "r3", "--key", old_key)
    assert_one_clear_error(refused, new_thumbprint)


def test_a_rewrap_killed_after_its_first_manifest_is_finished_by_the_next_apply(
    workspace: Workspace, run: Runner
) -> None:
    old_cert, old_key = create_keys(run, workspace, "old", "--algorithm", "ec-p256")
    use_encryption(workspace, old_cert)
    assert run("apply", "-f", workspace.config, "--now", at(0)).code == 0
    assert run("apply", "-f", workspace.config, "--now", at(13)).code == 0
    new_cert, _new_key = create_keys(run, workspace, "new", "--algorithm", "ec-p256")
    use_encryption(workspace, new_cert, rewrap=True, previous=((old_key, None),))
    before = data_objects(workspace)
    killed = run(
        "apply", "-f", workspace.config, "--now", at(14),
        env={"BACKUPCTL_FAILPOINTS": "rewrap-manifest:exit"},
    )  # fmt: skip
    assert killed.code == 137, killed.text
    new_thumbprint = thumbprint_of_file(new_cert)
    plan = run("plan", "-f", workspace.config, "--now", at(14), "--output", "json")
    [rewrap] = [
        a
        for a in json.loads(plan.out)["configurations"][0]["actions"]
        if a["action"] == "key.rewrap"
    ]
    assert len(rewrap["backups"]) == 2, "the catalog still shows both on the old key"
    resumed = run("apply", "-f", workspace.config, "--now", at(14))
    assert resumed.code == 0, resumed.text
    assert "re-wrapped 2 backups" in resumed.out
    assert [b["keyThumbprint"] for b in backups(run, workspace)] == [new_thumbprint] * 2
    assert data_objects(workspace) == before
    final = run("plan", "-f", workspace.config, "--now", at(14), "--detailed-exitcode")
    assert final.code == 0, final.text


def test_backups_no_previous_key_belongs_to_stay_on_their_key_and_the_plan_says_so(
    workspace: Workspace, run: Runner
) -> None:
    assert run("apply", "-f", workspace.config, "--now", at(0)).code == 0
    demo_thumbprint = thumbprint_of_file(workspace.examples / "keys" / "demo-backup.cer")
    _unrelated_cert, unrelated_key = create_keys(
        run, workspace, "unrelated", "--algorithm", "ec-p256"
    )
    new_cert, _ = create_keys(run, workspace, "new", "--algorithm", "ec-p256")
    use_encryption(workspace, new_cert, rewrap=True, previous=((unrelated_key, None),))
    plan = run("plan", "-f", workspace.config, "--now", at(1))
    assert plan.code == 0, plan.text
    assert "key.rewrap" not in plan.out
    assert "1 backup stays on its key because no key in spec.encryption.previousKeys" in plan.out
    assert f"belongs to certificate {demo_thumbprint}" in plan.out


def test_an_encrypted_previous_key_needs_its_passphrase_reference(
    workspace: Workspace, run: Runner
) -> None:
    assert run("apply", "-f", workspace.config, "--now", at(0)).code == 0
    demo_key = workspace.private_key
    env = {"OLD_KEY_PASSPHRASE": "correct horse battery staple"}
    locked = workspace.examples / "keys" / "demo-locked.pem"
    locked.write_bytes(
        private_key_pem(load_private_key(demo_key, None).key, env["OLD_KEY_PASSPHRASE"].encode())
    )
    new_cert, _new_key = create_keys(run, workspace, "new", "--algorithm", "ec-p256")
    use_encryption(workspace, new_cert, rewrap=True, previous=((locked, None),))
    refused = run("plan", "-f", workspace.config, "--now", at(1))
    assert_one_clear_error(refused, "spec.encryption.previousKeys[0]", "is encrypted", "passphrase")
    assert env["OLD_KEY_PASSPHRASE"] not in refused.text
    use_encryption(workspace, new_cert, rewrap=True, previous=((locked, "OLD_KEY_PASSPHRASE"),))
    applied = run("apply", "-f", workspace.config, "--now", at(1), env=env)
    assert applied.code == 0, applied.text
    assert "key.rewrap: done" in applied.out
    assert env["OLD_KEY_PASSPHRASE"] not in applied.text
    [only] = backups(run, workspace)
    assert only["keyThumbprint"] == thumbprint_of_file(new_cert)


# ------------------------------------------------------------------ key rings


def test_a_key_folder_restores_backups_of_every_certificate_it_holds_keys_for(
    workspace: Workspace, run: Runner, tmp_path: Path
) -> None:
    identity = workspace.examples / "stamp" / "identity"
    assert run("apply", "-f", workspace.config, "--now", at(0)).code == 0
    before = tree_snapshot(identity)
    new_cert, new_key = create_keys(run, workspace, "new", "--algorithm", "ec-p256")
    use_encryption(workspace, new_cert)
    # Each backup holds different content, so a restore of the wrong one shows.
    (identity / "after-rotation.json").write_text('{"rotated": true}\n')
    assert run("apply", "-f", workspace.config, "--now", at(13)).code == 0
    expected = {thumbprint_of_file(new_cert): tree_snapshot(identity)}
    expected[thumbprint_of_file(workspace.examples / "keys" / "demo-backup.cer")] = before
    ring = tmp_path / "ring"
    ring.mkdir()
    for path in (
        workspace.private_key,
        new_key,
        new_cert,
        workspace.examples / "keys" / "demo-backup.cer",
    ):
        (ring / path.name).write_bytes(path.read_bytes())
    for number, entry in enumerate(backups(run, workspace)):
        result = restore(
            run, workspace, str(entry["id"]), tmp_path / f"r{number}", "--key-dir", ring
        )
        assert result.code == 0, result.text
        restored = tree_snapshot(tmp_path / f"r{number}" / "identity")
        assert restored == expected[str(entry["keyThumbprint"])]
        assert tree_snapshot(tmp_path / f"r{number}" / "root-ca") == tree_snapshot(
            workspace.examples / "stamp" / "ca"
        )
    only_new = tmp_path / "only-new"
    only_new.mkdir()
    (only_new / "new.pem").write_bytes(new_key.read_bytes())
    first = backups(run, workspace)[0]
    refused = restore(run, workspace, str(first["id"]), tmp_path / "rx", "--key-dir", only_new)
    assert_one_clear_error(refused, str(first["keyThumbprint"]))


def test_an_encrypted_key_without_passphrase_asks_for_key_passphrase_env(
    workspace: Workspace, run: Runner, tmp_path: Path
) -> None:
    env = {"RESTORE_PASSPHRASE": "correct horse battery staple"}
    cert, key = create_keys(
        run, workspace, "locked", "--passphrase-env", "RESTORE_PASSPHRASE", env=env
    )
    use_encryption(workspace, cert)
    assert run("apply", "-f", workspace.config, "--now", at(0), env=env).code == 0
    refused = restore(run, workspace, "latest", tmp_path / "r0", "--key", key)
    assert_one_clear_error(refused, str(key), "--key-passphrase-env")
    restored = run(
        "restore", "-f", workspace.config, "--backup", "latest", "--key", key,
        "--key-passphrase-env", "RESTORE_PASSPHRASE", "--to", tmp_path / "r1", env=env,
    )  # fmt: skip
    assert restored.code == 0, restored.text
    assert env["RESTORE_PASSPHRASE"] not in restored.text


# ------------------------------------------------------------------ certificate health


def write_certificate(path: Path, valid_from: datetime, days: int) -> None:
    cert, _key = create_key_pair("ec-p256", "CN=short-lived backups", days, valid_from)
    path.write_bytes(certificate_bytes(cert, der=False))


def test_an_expiring_certificate_shows_in_the_plan_but_changes_nothing(
    workspace: Workspace, run: Runner
) -> None:
    cert, _key = create_keys(run, workspace, "soon", "--days", "20", "--algorithm", "ec-p256")
    use_encryption(workspace, cert)
    text = run("plan", "-f", workspace.config)
    assert text.code == 0, text.text
    assert re.search(
        rf"warning: certificate {thumbprint_of_file(cert)} .* expires on \S+, within 30 days",
        text.out,
    )
    document = json.loads(run("plan", "-f", workspace.config, "--output", "json").out)
    [entry] = document["configurations"]
    expiry = x509.load_pem_x509_certificate(cert.read_bytes()).not_valid_after_utc
    assert entry["certificate"]["notAfter"] == expiry.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert len(entry["warnings"]) == 1
    markdown = run("plan", "-f", workspace.config, "--output", "markdown")
    assert "**Warning:** certificate" in markdown.out
    assert run("apply", "-f", workspace.config).code == 0
    quiet = run("plan", "-f", workspace.config, "--detailed-exitcode")
    assert quiet.code == 0, "a warning is not a pending change"
    assert "within 30 days" in quiet.out
    far_future = run("plan", "-f", workspace.config, "--now", "2030-01-01T00:00:00Z")
    assert far_future.code == 0, "--now never makes the certificate expire"


def test_an_expired_certificate_is_refused_by_validate_plan_and_apply(
    workspace: Workspace, run: Runner
) -> None:
    cert = workspace.examples / "keys" / "expired.cer"
    write_certificate(cert, datetime.now(UTC) - timedelta(days=10), days=3)
    use_encryption(workspace, cert)
    for command in ("validate", "plan", "apply"):
        result = run(command, "-f", workspace.config)
        assert_one_clear_error(result, "spec.encryption.certificate", "expired on")
    assert not workspace.repository.exists()


def test_a_certificate_file_holding_a_private_key_is_refused(
    workspace: Workspace, run: Runner
) -> None:
    cert = workspace.examples / "keys" / "demo-backup.cer"
    bundle = workspace.examples / "keys" / "bundle.pem"
    bundle.write_bytes(cert.read_bytes() + workspace.private_key.read_bytes())
    use_encryption(workspace, bundle)
    result = run("validate", "-f", workspace.config)
    assert_one_clear_error(result, "contains a private key")


def test_the_daemon_exposes_when_the_certificate_expires(tmp_path: Path) -> None:
    region = Region.create(tmp_path / "ws")
    daemon = region.start(
        "daemon", "-f", region.config, "--listen", "127.0.0.1:0", "--log-format", "json",
        "--interval", "3600",
    )  # fmt: skip
    try:
        daemon.wait_for('"event": "daemon.listening"')
        code, metrics = get(f"http://{address(daemon)}/metrics")
    finally:
        daemon.kill9()
    assert code == 200
    expiry = x509.load_pem_x509_certificate(
        (region.root / "examples" / "keys" / "demo-backup.cer").read_bytes()
    ).not_valid_after_utc
    name = "backupctl_certificate_expiry_timestamp_seconds"
    assert sample(metrics, name, configuration="quickstart") == expiry.timestamp()
