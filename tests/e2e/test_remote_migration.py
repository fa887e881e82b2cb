"""Relocation between real backends: from an SMB share (Samba) to an Azure file
share (the emulator), and back, with every backup copied verifiably."""

from __future__ import annotations

from pathlib import Path

from tests.azure_emulator import AzureFilesEmulator
from tests.e2e.conftest import Runner, Workspace
from tests.e2e.remote import Cli, share_files
from tests.e2e.test_azure_backend import KEY_VAR, on_azure
from tests.e2e.test_smb_backend import on_samba
from tests.servers.samba import SambaServer

DAY1 = "2026-11-20T00:00:00Z"
DAY2 = "2026-11-21T00:00:00Z"


def as_migration_source(storage_block: str) -> str:
    """A ``storage:`` block rewritten as ``migration: from:``."""
    lines = storage_block.rstrip("\n").splitlines()
    assert lines[0] == "  storage:"
    return "  migration:\n    from:\n" + "".join(f"  {line}\n" for line in lines[1:])


def test_backups_move_from_an_smb_share_to_an_azure_file_share_and_back(
    workspace: Workspace,
    run: Runner,
    samba_server: SambaServer,
    azure_emulator: AzureFilesEmulator,
    tmp_path: Path,
) -> None:
    cli = Cli(run, workspace)
    smb = on_samba(cli, samba_server)
    smb_block = smb.storage()
    cli.apply("--now", DAY1)
    cli.apply("--now", DAY2)
    before = cli.listing()
    assert [b["status"] for b in before] == ["Succeeded", "Succeeded"]
    untouched = share_files(smb.local())

    azure = on_azure(cli, azure_emulator)
    cli.configure(azure.storage() + as_migration_source(smb_block))
    plan = cli.ok("plan", "-f", cli.config, "--now", DAY2)
    assert "backups.migrate" in plan.out and "backup.run" not in plan.out
    moved = cli.apply("--now", DAY2)
    assert moved.code == 0, moved.text
    assert "every object verified" in moved.out
    keep = ("id", "createdAt", "keyThumbprint", "status", "sizeBytes")
    assert [{k: b[k] for k in keep} for b in cli.listing()] == [
        {k: b[k] for k in keep} for b in before
    ]
    assert azure.backup_ids() == {str(b["id"]) for b in before}
    assert share_files(smb.local()) == untouched, "the previous location was modified"
    again = cli.apply("--now", DAY2)
    assert again.code == 0 and "backups.migrate" not in again.out
    cli.restore_and_compare(tmp_path / "from-azure", backup=str(before[0]["id"]))

    # And back again, into a fresh SMB folder, from Azure.
    azure_block = azure.storage()
    back = on_samba(cli, samba_server)
    cli.env[KEY_VAR] = azure_emulator.account_key
    cli.configure(back.storage() + as_migration_source(azure_block))
    returned = cli.apply("--now", DAY2)
    assert returned.code == 0, returned.text
    assert {b["id"] for b in cli.listing()} == {b["id"] for b in before}
    assert cli.ok("plan", "-f", cli.config, "--now", DAY2, "--detailed-exitcode")
    back.assert_no_secret_stored(cli)
    azure.assert_no_secret_stored(cli)
