"""The CLI against the Azure Files emulator, through the unmodified SDK: backup,
restore, prune, switching from an account key to a SAS, refused credentials,
throttling, dropped connections, a full share and an emulator that goes away.

The emulator runs in this pytest process and checks the signature of every
request; the CLI subprocess reaches it on 127.0.0.1. Most tests share the
session's emulator (each in its own directory); tests that stop an emulator
use this module's spare one. Keys and SAS tokens reach ``backupctl`` only
through the environment, and every command's output and every file in the
emulator is checked for them.
"""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.azure_emulator import AzureFilesEmulator
from tests.e2e.conftest import Runner, Workspace
from tests.e2e.remote import (
    BIG_SOURCE,
    SLOW_SOURCE,
    SOURCE_OBJECTS,
    Cli,
    assert_format2_layout,
    assert_no_secret,
    assert_one_sentence,
    catalog,
    days_from_now,
    made_backup,
    stop_when,
    succeeded_ids,
    vault_export,
)
from tests.storage.backend_azure import SHARE

KEY_VAR = "BACKUPCTL_E2E_AZURE_KEY"
SAS_VAR = "BACKUPCTL_E2E_AZURE_SAS"
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def spare_emulator() -> Iterator[AzureFilesEmulator]:
    """A second emulator, for tests that stop it (they start it again)."""
    with AzureFilesEmulator() as emulator:
        emulator.create_share(SHARE)
        yield emulator


@pytest.fixture
def emulator(azure_emulator: AzureFilesEmulator) -> Iterator[AzureFilesEmulator]:
    """The session's emulator, without faults left over by a failed test."""
    azure_emulator.clear_faults()
    yield azure_emulator
    azure_emulator.clear_faults()


@dataclass(frozen=True)
class AzureSite:
    """A test's directory ``<share>/<directory>`` in an emulator, and its repository."""

    emulator: AzureFilesEmulator
    directory: str
    share: str = SHARE

    def storage(self, auth: str = "accountKey", share: str | None = None) -> str:
        """The ``storage:`` block of a configuration; ``auth`` is accountKey or sasToken."""
        variable = KEY_VAR if auth == "accountKey" else SAS_VAR
        return (
            "  storage:\n"
            "    azureFileShare:\n"
            f"      accountUrl: {self.emulator.account_url}\n"
            f"      share: {share or self.share}\n"
            f"      directory: {self.directory}\n"
            "      auth:\n"
            f"        {auth}: {{env: {variable}}}\n"
        )

    @property
    def repository(self) -> str:
        return f"{self.directory}/quickstart/"

    def files(self) -> dict[str, bytes]:
        """The files of this test's repository, by path inside it."""
        everything = self.emulator.files(self.share)
        prefix = self.repository
        return {k[len(prefix) :]: v for k, v in everything.items() if k.startswith(prefix)}

    def backup_objects(self, backup_id: str) -> set[str]:
        prefix = f"backups/{backup_id}/"
        return {k[len(prefix) :] for k in self.files() if k.startswith(prefix)}

    def backup_ids(self) -> set[str]:
        return {k.split("/")[1] for k in self.files() if k.startswith("backups/")}

    def assert_no_secret_stored(self, cli: Cli) -> None:
        """No secret in any file of any share of the emulator."""
        assert self.files(), "the test wrote nothing to the emulator"
        for share in list(self.emulator.store.shares):
            stored = {f"{share}/{k}": v for k, v in self.emulator.files(share).items()}
            assert_no_secret(cli.secrets, stored)


def on_azure(
    cli: Cli,
    emulator: AzureFilesEmulator,
    *,
    share: str = SHARE,
    retention: tuple[int, int] | None = None,
) -> AzureSite:
    """Point ``cli`` at a fresh directory of ``emulator``, with its account key."""
    site = AzureSite(emulator, f"e2e-{secrets.token_hex(4)}", share)
    cli.env[KEY_VAR] = emulator.account_key
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


def other_key() -> str:
    """A well-formed account key that is not the emulator's."""
    return base64.b64encode(os.urandom(64)).decode()


def rejected(emulator: AzureFilesEmulator) -> str:
    return f"Azure Files at {emulator.account_name} rejected the credentials"


# -- 1. the round trip ------------------------------------------------------------


def test_backup_lands_in_the_share_restores_byte_for_byte_and_is_pruned(
    cli: Cli, emulator: AzureFilesEmulator, tmp_path: Path
) -> None:
    site = on_azure(cli, emulator, retention=(1, 1))
    old = first_backup(cli)

    # In the emulator: the repository files, packs, the index, key records, and
    # one chunk list per source.
    assert {"format.json", "settings.json", "catalog.json"} <= set(site.files())
    assert_format2_layout(site.files(), [old])
    plaintext = vault_export(cli.workspace)
    assert all(plaintext not in data for data in site.files().values()), "stored unencrypted"

    assert cli("plan", "-f", cli.config, "--detailed-exitcode").code == 0
    [listed] = cli.listing()
    assert listed["id"] == old and listed["status"] == "Succeeded"
    assert {s["name"]: s["status"] for s in listed["sources"]} == dict.fromkeys(
        SOURCE_OBJECTS, "Succeeded"
    )
    cli.restore_and_compare(tmp_path / "restored")

    # Ten days later: a new backup, and the old one is beyond the one day of
    # retention while the new one satisfies minBackups 1.
    later = cli.apply("--now", days_from_now(10))
    assert "backup.prune: done" in later.out and old in later.out, later.text
    new = made_backup(later)
    assert catalog(site.files()["catalog.json"]) == {new: "Succeeded"}
    assert site.backup_ids() == {new}
    site.assert_no_secret_stored(cli)


# -- 2. credential rotation -------------------------------------------------------


def test_switching_from_the_account_key_to_a_sas_token_is_validated_then_recorded(
    cli: Cli, emulator: AzureFilesEmulator, tmp_path: Path
) -> None:
    site = on_azure(cli, emulator)
    first_backup(cli)
    cli.configure(site.storage(auth="sasToken"))

    # A SAS signed with another key is refused by the service.
    forged = cli("plan", "-f", cli.config, env={SAS_VAR: emulator.account_sas(key=other_key())})
    assert_one_sentence(forged, rejected(emulator))

    # A SAS that may only read and list: planned (it reads fine), but apply's
    # validation cannot write, so nothing is recorded and it stays planned.
    read_only = {SAS_VAR: emulator.account_sas("rl")}
    planned = cli("plan", "-f", cli.config, "--detailed-exitcode", env=read_only)
    assert planned.code == 2 and "credentials.rotate" in planned.out, planned.text
    settings_before = site.files()["settings.json"]
    refused = cli.apply(env=read_only)
    assert_one_sentence(refused, f"Azure Files at {emulator.account_name} do not allow it")
    assert site.files()["settings.json"] == settings_before

    cli.env[SAS_VAR] = emulator.account_sas("rwdlc")
    saved = tmp_path / "plan.json"
    plan = cli("plan", "-f", cli.config, "--detailed-exitcode", "--out", saved)
    assert plan.code == 2, plan.text
    assert "credentials.rotate" in plan.out and "SAS" in plan.out
    assert "backup.run" not in plan.out
    assert_no_secret(cli.secrets, {"the saved plan": saved.read_bytes()})

    # The reviewed plan is what runs: applied from the file, not planned again.
    applied = cli("apply", saved)
    assert applied.code == 0, applied.text
    assert "backup.run" not in applied.out, "apply did more than the saved plan"
    assert "credentials.rotate: done" in applied.out and "validated" in applied.out
    assert site.files()["settings.json"] != settings_before
    assert not [k for k in site.files() if ".tmp-" in k], "the validation probe was left"
    assert cli("plan", "-f", cli.config, "--detailed-exitcode").code == 0
    site.assert_no_secret_stored(cli)


# -- 3. failures that lose nothing, and transient ones that recover ------------------


def test_each_failure_has_its_own_sentence_and_loses_nothing(
    cli: Cli, spare_emulator: AzureFilesEmulator, tmp_path: Path
) -> None:
    """Wrong account key, missing share, stopped emulator (a forged SAS: see the
    rotation test). A SAS is used throughout: a network error that showed its
    request URL would show the SAS signature too."""
    site = on_azure(cli, spare_emulator)
    cli.env[SAS_VAR] = spare_emulator.account_sas("rwdlc")
    cli.configure(site.storage(auth="sasToken"))
    backup = first_backup(cli)
    before = site.files()

    cli.configure(site.storage(auth="accountKey"))
    wrong = cli.apply(env={KEY_VAR: other_key()})
    assert_one_sentence(wrong, rejected(spare_emulator))
    assert site.files() == before

    cli.configure(site.storage(auth="sasToken", share="no-such-share"))
    missing = cli.apply()
    assert_one_sentence(
        missing,
        f"the storage account {spare_emulator.account_name} has no file share named no-such-share",
    )
    assert site.files() == before

    cli.configure(site.storage(auth="sasToken"))
    spare_emulator.stop()
    try:
        stopped = cli.apply()
    finally:
        spare_emulator.start()
    assert_one_sentence(
        stopped, f"cannot reach Azure Files at {spare_emulator.account_url} (connection refused)"
    )
    assert site.files() == before

    sentences = [r.err for r in (wrong, missing, stopped)]
    assert len(set(sentences)) == 3, sentences
    assert succeeded_ids(cli.listing()) == [backup]
    cli.restore_and_compare(tmp_path / "restored")
    site.assert_no_secret_stored(cli)


def test_throttling_a_lost_commit_answer_and_a_dropped_download_are_retried(
    cli: Cli, emulator: AzureFilesEmulator, tmp_path: Path
) -> None:
    site = on_azure(cli, emulator)
    emulator.clear_log()
    emulator.inject(status=503, times=2)
    # The manifest's rename (the commit) is done, but its answer never arrives.
    lost = emulator.inject(
        method="PUT",
        predicate=lambda r: r.comp == "rename" and r.path.endswith("/manifest.json"),
        drop_after=0,
    )
    backup = first_backup(cli)
    assert [r.status for r in emulator.requests[:3]] == [503, 503, 201]
    assert lost.hits == 1
    assert "manifest.json" in site.backup_objects(backup)

    # The first download of the key-vault chunk list, and the first read of a
    # pack, are each cut off after 16 bytes.
    emulator.clear_log()
    obj = f"{site.repository}backups/{backup}/{SOURCE_OBJECTS['key-vault']}"
    dropped = emulator.inject(method="GET", path_contains=obj, drop_after=16)
    packs = f"{site.repository}packs/"
    dropped_pack = emulator.inject(method="GET", path_contains=packs, drop_after=16)
    cli.restore_and_compare(tmp_path / "restored")
    assert dropped.hits == 1 and dropped_pack.hits == 1
    downloads = [r for r in emulator.requests if r.method == "GET" and r.path.endswith(obj)]
    assert len(downloads) == 2, downloads
    site.assert_no_secret_stored(cli)


def test_a_full_share_fails_the_backup_in_one_sentence_and_the_next_apply_succeeds(
    cli: Cli, emulator: AzureFilesEmulator
) -> None:
    share = f"quota-{secrets.token_hex(4)}"
    emulator.create_share(share)
    site = on_azure(cli, emulator, share=share)
    first = first_backup(cli)
    # Room for the small sources, not for 3 MB more.
    emulator.set_quota(share, emulator.store.share(share).used_bytes + MIB)
    cli.configure(site.storage(), trigger="before-upgrade", extra_sources=BIG_SOURCE)
    before = site.files()

    full = cli.apply()
    # The run's new chunks go to one pack, written once every source is read.
    assert_one_sentence(full, f"the file share {share} is full (quota reached)", "packs/")
    # The earlier backup is intact, byte for byte, and still listed.
    after = site.files()
    assert {k: v for k, v in after.items() if first in k} == {
        k: v for k, v in before.items() if first in k
    }
    assert catalog(after["catalog.json"]).get(first) == "Succeeded"
    # The failed run's data key record stays (format 2 never deletes one; it
    # is a few hundred bytes and decrypts nothing without the private key).
    failed_leftovers = {k for k in after.keys() - before.keys() if not k.startswith("keys/data/")}

    emulator.set_quota(share, None)
    retried = cli.apply()
    second = made_backup(retried)
    # Whatever the failure could not remove itself, this apply cleaned up.
    assert not failed_leftovers or "staging.cleanup: done" in retried.out, failed_leftovers
    assert site.backup_ids() == {first, second}
    assert "manifest.json" in site.backup_objects(second)
    assert not [k for k in site.files() if ".tmp-" in k]
    site.assert_no_secret_stored(cli)


# -- 4. the emulator goes away in the middle of a backup ----------------------------


def test_an_emulator_stopped_mid_backup_leaves_no_backup_and_the_next_apply_recovers(
    cli: Cli, spare_emulator: AzureFilesEmulator
) -> None:
    site = on_azure(cli, spare_emulator)
    first = first_backup(cli)
    # One more source that writes only after 2 s; a trigger asks for a backup.
    cli.configure(site.storage(), trigger="after-maintenance", extra_sources=SLOW_SOURCE)

    def fast_sources_stored() -> bool:
        # The five quick sources are stored: the slow one is running.
        [new] = site.backup_ids() - {first}
        return site.backup_objects(new) >= set(SOURCE_OBJECTS.values())

    try:
        with stop_when(fast_sources_stored, spare_emulator.stop) as stopped:
            interrupted = cli.apply()
        assert stopped.is_set(), "the emulator was not stopped during the backup"
    finally:
        spare_emulator.start()
    assert_one_sentence(
        interrupted,
        f"cannot reach Azure Files at {spare_emulator.account_url} (connection refused)",
    )
    [leftover] = site.backup_ids() - {first}
    assert "manifest.json" not in site.backup_objects(leftover), "the backup was committed"
    assert succeeded_ids(cli.listing()) == [first]

    # The requested backup is still due (without the slow source, to be quick).
    cli.configure(site.storage(), trigger="after-maintenance")
    recovered = cli.apply()
    assert "staging.cleanup: done" in recovered.out, recovered.text
    second = made_backup(recovered)
    assert catalog(site.files()["catalog.json"]) == {first: "Succeeded", second: "Succeeded"}
    assert site.backup_ids() == {first, second}
    assert not [k for k in site.files() if ".tmp-" in k]
    site.assert_no_secret_stored(cli)


# -- bugs found elsewhere -----------------------------------------------------------


def test_verify_with_a_read_only_sas_reports_the_backups_it_found_intact(
    cli: Cli, emulator: AzureFilesEmulator
) -> None:
    site = on_azure(cli, emulator)
    backup = first_backup(cli)
    cli.configure(site.storage(auth="sasToken"))
    result = cli("verify", "-f", cli.config, env={SAS_VAR: emulator.account_sas("rl")})
    assert f"backup {backup} intact" in result.out, result.text
    assert "verified 1 backup" in result.out and "1 intact, 0 failed" in result.out, result.text
    assert result.code == 0, result.text
