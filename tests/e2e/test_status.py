"""``backupctl status`` as a user runs it, on a repository made by ``apply``."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema

from tests.e2e.conftest import REPO, Runner, Workspace, assert_one_clear_error
from tests.e2e.test_keys_rotation import use_encryption, write_certificate

SCHEMA = json.loads((REPO / "schemas" / "status.schema.json").read_text(encoding="utf-8"))


def test_status_after_apply_shows_the_backup_backups_list_shows_as_ok(
    workspace: Workspace, run: Runner
) -> None:
    assert run("apply", "-f", workspace.config).code == 0
    listing = json.loads(run("backups", "list", "-f", workspace.config, "--output", "json").out)
    [backup] = listing["backups"]
    text = run("status", "-f", workspace.config)
    assert text.code == 0, text.text
    lines = text.out.splitlines()
    assert lines[0] == "quickstart"
    assert lines[1].startswith("  health:         ok (the last Succeeded backup is ")
    assert f"  last success:   {backup['id']} (0 min ago)" in lines
    [next_backup] = [line for line in lines if line.startswith("  next backup:")]
    assert next_backup.endswith(("(in 11 h 59 min)", "(in 12 h 0 min)")), next_backup
    assert "  alerts:         none" in lines
    document = json.loads(run("status", "-f", workspace.config, "--output", "json").out)
    jsonschema.Draft202012Validator(SCHEMA).validate(document)
    [configuration] = document["configurations"]
    assert (document["apiVersion"], configuration["health"]) == ("v1", "ok")
    assert configuration["lastSuccess"]["id"] == backup["id"]
    fields = ("name", "status", "sizeBytes", "error")
    [shown] = configuration["backups"]["items"]
    assert [{f: s[f] for f in fields} for s in shown["sources"]] == backup["sources"]
    assert configuration["repositoryFormat"] == 2
    assert configuration["lastReconcile"] is None  # only the daemon knows


def test_status_of_an_unhealthy_configuration_exits_0_and_an_unreadable_file_1(
    workspace: Workspace, run: Runner, tmp_path: Path
) -> None:
    # Never applied: no repository yet.
    result = run("status", "-f", workspace.config)
    assert result.code == 0, result.text
    assert "  health:         unknown" in result.out
    assert "    warning  path-or-permission: no repository exists at local folder" in result.out
    assert_one_clear_error(run("status", "-f", tmp_path / "missing.yaml"), "missing.yaml")


def test_status_shows_an_expired_certificate_that_apply_refuses(
    workspace: Workspace, run: Runner
) -> None:
    assert run("apply", "-f", workspace.config).code == 0
    cert = workspace.examples / "keys" / "expired.cer"
    write_certificate(cert, datetime.now(UTC) - timedelta(days=10), days=3)
    use_encryption(workspace, cert)
    result = run("status", "-f", workspace.config)
    assert result.code == 0, result.text
    assert "  health:         critical" in result.out
    assert "    critical certificate-expiry: certificate " in result.out
    assert "expired on" in result.out
