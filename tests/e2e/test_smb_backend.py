"""The CLI against a real Samba server: backup, restore, prune, password rotation,
failures that lose nothing, and a server that goes away in the middle of a backup.

Most tests use the session's Samba server (share ``backups``, each test in its
own folder); tests that stop a server use this module's spare one, never the
session's. The password reaches ``backupctl`` only through the environment,
and every command's output and every file written to the share is checked
for it (``Cli`` and ``SmbSite.assert_no_secret_stored``).
"""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.conftest import Runner, Workspace
from tests.e2e.remote import (
    SLOW_SOURCE,
    SOURCE_OBJECTS,
    Cli,
    assert_format2_layout,
    assert_no_secret,
    assert_one_sentence,
    catalog,
    days_from_now,
    made_backup,
    share_files,
    stop_when,
    succeeded_ids,
    vault_export,
)
from tests.servers.fixtures import start_samba_or_skip
from tests.servers.samba import SambaServer

PASSWORD_VAR = "BACKUPCTL_E2E_SMB_PASSWORD"
HOST = "127.0.0.1"


@pytest.fixture(scope="module")
def spare_samba() -> Iterator[SambaServer]:
    """A second server, for tests that stop it (they start it again)."""
    server = start_samba_or_skip()
    yield server
    server.cleanup()


@dataclass(frozen=True)
class SmbSite:
    """The folder ``//127.0.0.1/<share>/<folder>`` of a test, and its repository.

    ``windows_style`` writes the path as ``\\\\server\\share\\folder`` and the
    user as ``WORKGROUP\\user``, both of which must work as well."""

    server: SambaServer
    folder: str
    share: str = "backups"
    windows_style: bool = False

    @property
    def user(self) -> str:
        return f"WORKGROUP\\{self.server.username}" if self.windows_style else self.server.username

    def storage(self, share: str | None = None) -> str:
        """The ``storage:`` block of a configuration for this folder."""
        parts = [HOST, share or self.share, self.folder]
        path = "\\\\" + "\\".join(parts) if self.windows_style else "//" + "/".join(parts)
        return (
            "  storage:\n"
            "    smb:\n"
            f"      path: {path}\n"
            f"      port: {self.server.port}\n"
            f"      username: {self.user}\n"
            f"      password: {{env: {PASSWORD_VAR}}}\n"
        )

    def local(self, share: str | None = None) -> Path:
        """The folder on the server's disk."""
        return self.server.share_path(share or self.share) / self.folder

    @property
    def repository(self) -> Path:
        return self.local() / "quickstart"

    def backup_dir(self, backup_id: str) -> Path:
        return self.repository / "backups" / backup_id

    def files(self) -> dict[str, bytes]:
        """Every file this test's folder holds, on every share."""
        found: dict[str, bytes] = {}
        for share in ("backups", "readonly"):
            root = self.local(share)
            if root.exists():
                found |= {f"//{share}/{k}": v for k, v in share_files(root).items()}
        return found

    def assert_no_secret_stored(self, cli: Cli) -> None:
        """No secret in any file on the server's shares (not only this test's)."""
        assert self.files(), "the test wrote nothing to the share"
        for share in ("backups", "readonly"):
            stored = share_files(self.server.share_path(share))
            assert_no_secret(cli.secrets, {f"//{share}/{k}": v for k, v in stored.items()})


def on_samba(
    cli: Cli,
    server: SambaServer,
    retention: tuple[int, int] | None = None,
    *,
    windows_style: bool = False,
) -> SmbSite:
    """Point ``cli`` at a fresh folder of ``server`` with its current password."""
    site = SmbSite(server, f"e2e-{secrets.token_hex(4)}", windows_style=windows_style)
    cli.env[PASSWORD_VAR] = server.password
    cli.configure(site.storage(), retention=retention)
    return site


@pytest.fixture
def cli(workspace: Workspace, run: Runner) -> Cli:
    return Cli(run, workspace)


def first_backup(cli: Cli) -> str:
    """Apply a fresh configuration; return the id of the backup it made."""
    result = cli.apply()
    assert "repository.init: done" in result.out, result.text
    return made_backup(result)


# -- 1. the round trip ------------------------------------------------------------


def test_backup_lands_on_the_share_restores_byte_for_byte_and_is_pruned(
    cli: Cli, samba_server: SambaServer, tmp_path: Path
) -> None:
    site = on_samba(cli, samba_server, retention=(1, 1))
    old = first_backup(cli)

    # On the share: the repository files, packs, the index, key records, and
    # one chunk list per source.
    assert {p.name for p in site.repository.iterdir()} >= {
        "format.json",
        "settings.json",
        "catalog.json",
        "backups",
    }
    assert_format2_layout(share_files(site.repository), [old])
    plaintext = vault_export(cli.workspace)
    assert all(plaintext not in data for data in site.files().values()), "stored unencrypted"

    assert cli("plan", "-f", cli.config, "--detailed-exitcode").code == 0
    [listed] = cli.listing()
    assert listed["id"] == old and listed["status"] == "Succeeded"
    assert {s["name"]: s["status"] for s in listed["sources"]} == dict.fromkeys(
        SOURCE_OBJECTS, "Succeeded"
    )
    assert listed["sizeBytes"] > 0 and listed["keyThumbprint"]
    cli.restore_and_compare(tmp_path / "restored")

    # Ten days later: a new backup is due, and the old one is beyond the one
    # day of retention while the new one satisfies minBackups 1.
    later = cli.apply("--now", days_from_now(10))
    assert "backup.prune: done" in later.out, later.text
    assert old in later.out
    new = made_backup(later)
    assert catalog((site.repository / "catalog.json").read_bytes()) == {new: "Succeeded"}
    assert not site.backup_dir(old).exists()
    assert (site.backup_dir(new) / "manifest.json").is_file()
    site.assert_no_secret_stored(cli)


# -- 2. credential rotation -------------------------------------------------------


def test_a_password_rotated_on_the_server_is_planned_validated_and_recorded(
    cli: Cli, samba_server: SambaServer, tmp_path: Path
) -> None:
    original = samba_server.password
    site = on_samba(cli, samba_server, windows_style=True)
    first_backup(cli)
    settings = site.repository / "settings.json"
    recorded_before = settings.read_bytes()
    new = f"Rotated ä/%{secrets.token_urlsafe(10)}"
    try:
        samba_server.set_password(new)
        cli.env[PASSWORD_VAR] = new
        saved = tmp_path / "plan.json"
        plan = cli("plan", "-f", cli.config, "--detailed-exitcode", "--out", saved)
        assert plan.code == 2, plan.text
        assert "credentials.rotate" in plan.out and site.user in plan.out
        assert "backup.run" not in plan.out
        assert_no_secret(cli.secrets, {"the saved plan": saved.read_bytes()})

        # The reviewed plan is what runs: applied from the file, not planned again.
        applied = cli("apply", saved)
        assert applied.code == 0, applied.text
        assert "backup.run" not in applied.out, "apply did more than the saved plan"
        assert "credentials.rotate: done" in applied.out and "validated" in applied.out
        assert settings.read_bytes() != recorded_before, "the new fingerprint was not recorded"
        assert not [p for p in site.repository.rglob("*") if ".tmp-" in p.name], "probe left"
        assert cli("plan", "-f", cli.config, "--detailed-exitcode").code == 0
        # Both passwords went through the environment: no output showed either.
        assert {original, new} <= cli.secrets
        site.assert_no_secret_stored(cli)
    finally:
        samba_server.set_password(original)


# -- 3. failures that lose nothing -------------------------------------------------


def test_each_failure_has_its_own_sentence_and_loses_nothing(
    cli: Cli, spare_samba: SambaServer, tmp_path: Path
) -> None:
    """Wrong password, missing share, read-only share, stopped server."""
    site = on_samba(cli, spare_samba, windows_style=True)
    backup = first_backup(cli)
    before = site.files()

    wrong = cli.apply(env={PASSWORD_VAR: f"Wrong-{secrets.token_hex(8)}"})
    assert_one_sentence(wrong, f"the SMB server at {HOST} rejected the credentials for {site.user}")
    assert site.files() == before

    cli.configure(site.storage(share="no-such-share"))
    missing = cli.apply()
    assert_one_sentence(missing, f"the SMB server at {HOST} has no share named no-such-share")
    assert site.files() == before

    # The repository as it is on a share that became read-only: a day later a
    # backup is due there, but nothing can be written.
    shutil.copytree(site.local(), site.local("readonly"))
    cli.configure(site.storage(share="readonly"))
    before = site.files()
    read_only = cli.apply("--now", days_from_now(1))
    assert_one_sentence(
        read_only, f"//{HOST}/readonly/{site.folder}/quickstart is not writable by {site.user}"
    )
    assert site.files() == before

    cli.configure(site.storage())
    spare_samba.stop()
    try:
        stopped = cli.apply()
    finally:
        spare_samba.start()
    assert_one_sentence(
        stopped, f"cannot reach the SMB server at {HOST}:{spare_samba.port}: connection refused"
    )
    assert site.files() == before

    sentences = [r.err for r in (wrong, missing, read_only, stopped)]
    assert len(set(sentences)) == 4, sentences
    assert succeeded_ids(cli.listing()) == [backup]
    cli.restore_and_compare(tmp_path / "restored")
    site.assert_no_secret_stored(cli)


# -- 4. the server goes away in the middle of a backup ------------------------------


def test_a_server_stopped_mid_backup_leaves_no_backup_and_the_next_apply_recovers(
    cli: Cli, spare_samba: SambaServer
) -> None:
    site = on_samba(cli, spare_samba)
    first = first_backup(cli)
    # One more source that writes only after 2 s; a trigger asks for a backup.
    cli.configure(site.storage(), trigger="after-maintenance", extra_sources=SLOW_SOURCE)
    backups = site.repository / "backups"

    def slow_source_writing() -> bool:
        # The five quick sources are stored and the slow one's temporary
        # object is open on the server: the backup is half done.
        [folder] = [p for p in backups.iterdir() if p.name != first]
        names = {p.name for p in folder.iterdir()}
        return names >= set(SOURCE_OBJECTS.values()) and any(
            n.startswith("slow-dump.") and ".tmp-" in n for n in names
        )

    try:
        with stop_when(slow_source_writing, spare_samba.stop) as stopped:
            interrupted = cli.apply()
        assert stopped.is_set(), "the server was not stopped during the backup"
        # Packs are written by a thread of their own: the server may be found gone
        # on a connection in use or on a new one; either way one sentence names it.
        assert_one_sentence(interrupted, f"the SMB server at {HOST}")
    finally:
        spare_samba.start()

    [leftover] = [p for p in backups.iterdir() if p.name != first]
    assert not (leftover / "manifest.json").exists(), "the interrupted backup was committed"
    assert succeeded_ids(cli.listing()) == [first]

    # The requested backup is still due (without the slow source, to be quick).
    cli.configure(site.storage(), trigger="after-maintenance")
    recovered = cli.apply()
    assert "staging.cleanup: done" in recovered.out, recovered.text
    second = made_backup(recovered)
    listed = catalog((site.repository / "catalog.json").read_bytes())
    assert listed == {first: "Succeeded", second: "Succeeded"}
    assert not leftover.exists()
    assert not [p for p in site.repository.rglob("*") if ".tmp-" in p.name]
    site.assert_no_secret_stored(cli)
