"""The status of configurations whose SMB storage fails, against a real Samba server:
each failure is the configuration's health with an alert of its kind, never an
exception, and never the password."""

from __future__ import annotations

import secrets
import shutil
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from reconciler.spec import load_configurations
from reconciler.spec.model import BackupConfiguration
from reconciler.usecases.status import build_status
from reconciler.usecases.status_model import AlertKind, ConfigurationStatus, Health
from tests.servers.samba import SambaServer, free_port

ROOT = Path(__file__).resolve().parents[2]
PASSWORD_VAR = "BACKUPCTL_TEST_STATUS_SMB_PASSWORD"


def smb_config(
    tmp_path: Path, server: SambaServer, folder: str, port: int | None = None
) -> BackupConfiguration:
    shutil.copy(ROOT / "examples" / "keys" / "demo-backup.cer", tmp_path / "backup.cer")
    (tmp_path / "region.yaml").write_text(
        textwrap.dedent(f"""\
        apiVersion: backupctl/v1
        kind: BackupConfiguration
        metadata: {{name: region-west}}
        spec:
          storage:
            smb:
              path: //127.0.0.1/backups/{folder}
              port: {port or server.port}
              username: {server.username}
              password: {{env: {PASSWORD_VAR}}}
          encryption: {{certificate: {{file: backup.cer}}}}
          sources:
            - name: settings
              command: {{backup: [printf, x]}}
        """)
    )
    [config] = load_configurations(tmp_path / "region.yaml", check_validity=False)
    return config


def status_with(
    config: BackupConfiguration, password: str, monkeypatch: pytest.MonkeyPatch
) -> ConfigurationStatus:
    monkeypatch.setenv(PASSWORD_VAR, password)
    [status] = build_status([config], datetime.now(UTC)).configurations
    assert password not in repr(status)
    return status


def test_a_wrong_password_is_an_authentication_alert(
    samba_server: SambaServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = smb_config(tmp_path, samba_server, f"status-{secrets.token_hex(3)}")
    status = status_with(config, f"wrong-{secrets.token_hex(6)}", monkeypatch)
    assert status.health is Health.CRITICAL
    assert [(a.kind, a.severity) for a in status.alerts] == [
        (AlertKind.AUTHENTICATION, Health.CRITICAL)
    ]


def test_a_server_that_does_not_answer_is_a_connectivity_alert(
    samba_server: SambaServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = smb_config(tmp_path, samba_server, "anything", port=free_port())
    status = status_with(config, samba_server.password, monkeypatch)
    assert status.health is Health.CRITICAL
    [alert] = status.alerts
    assert alert.kind is AlertKind.CONNECTIVITY
    assert "cannot reach the SMB server" in alert.message


def test_a_folder_the_user_may_not_read_is_a_path_or_permission_alert(
    samba_server: SambaServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = f"locked-{secrets.token_hex(3)}"
    (samba_server.share_path("backups") / folder / "region-west").mkdir(parents=True)
    (samba_server.share_path("backups") / folder).chmod(0o700)
    config = smb_config(tmp_path, samba_server, folder)
    status = status_with(config, samba_server.password, monkeypatch)
    assert status.health is Health.CRITICAL
    [alert] = status.alerts
    assert alert.kind is AlertKind.PATH_OR_PERMISSION
    assert alert.message.endswith("region-west is not readable by backupctl-test")
