"""Format 2 (deduplicating) repositories on a real Samba server and on the Azure
Files emulator, through the real CLI: packs, chunk lists, the index and key
records on the share; an unchanged backup adds no pack, with or without the
host's file cache; a flipped byte in a shared pack; a wrong index key; a
restore with only the private key; kill -9 in a backup and in reclaiming.

Each test runs once per storage (``remote``), in its own folder, with the
quickstart's small sample region; the file cache is a folder of the test
(``BACKUPCTL_CACHE_DIR``), never the user's.
"""

from __future__ import annotations

import os
import re
import secrets
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest

from tests.azure_emulator import AzureFilesEmulator
from tests.e2e.conftest import Runner, Workspace
from tests.e2e.remote import (
    Cli,
    Format2Objects,
    assert_format2_layout,
    assert_one_sentence,
    days_from_now,
    made_backup,
    share_files,
    succeeded_ids,
    vault_export,
)
from tests.e2e.test_quickstart import tree_snapshot
from tests.servers.samba import SambaServer
from tests.storage.backend_azure import SHARE

PASSWORD_VAR = "BACKUPCTL_E2E_SMB_PASSWORD"
KEY_VAR = "BACKUPCTL_E2E_AZURE_KEY"
INDEX_KEY_VAR = "BACKUPCTL_E2E_INDEX_KEY"
CACHE_VAR = "BACKUPCTL_CACHE_DIR"
CERTIFICATE_LINE = "    certificate: {file: keys/demo-backup.cer}\n"
NOISE = 300_000
"""Bytes of random data in the deployment tree: a change that needs its own chunks."""


class Remote(Protocol):
    def storage(self) -> str: ...

    def files(self) -> dict[str, bytes]:
        """Every file of the repository, by its path inside it."""
        ...

    def flip(self, path: str, offset: int) -> None:
        """Invert one byte of a stored file, behind backupctl's back."""
        ...


@dataclass(frozen=True)
class SmbRemote:
    server: SambaServer
    folder: str

    def storage(self) -> str:
        return (
            "  storage:\n"
            "    smb:\n"
            f"      path: //127.0.0.1/backups/{self.folder}\n"
            f"      port: {self.server.port}\n"
            f"      username: {self.server.username}\n"
            f"      password: {{env: {PASSWORD_VAR}}}\n"
        )

    @property
    def root(self) -> Path:
        return self.server.share_path("backups") / self.folder / "quickstart"

    def files(self) -> dict[str, bytes]:
        return share_files(self.root) if self.root.exists() else {}

    def flip(self, path: str, offset: int) -> None:
        target = self.root / path
        data = bytearray(target.read_bytes())
        data[offset] ^= 0xFF
        target.write_bytes(bytes(data))


@dataclass(frozen=True)
class AzureRemote:
    emulator: AzureFilesEmulator
    directory: str

    def storage(self) -> str:
        return (
            "  storage:\n"
            "    azureFileShare:\n"
            f"      accountUrl: {self.emulator.account_url}\n"
            f"      share: {SHARE}\n"
            f"      directory: {self.directory}\n"
            "      auth:\n"
            f"        accountKey: {{env: {KEY_VAR}}}\n"
        )

    @property
    def prefix(self) -> str:
        return f"{self.directory}/quickstart/"

    def files(self) -> dict[str, bytes]:
        everything = self.emulator.files(SHARE)
        n = len(self.prefix)
        return {k[n:]: v for k, v in everything.items() if k.startswith(self.prefix)}

    def flip(self, path: str, offset: int) -> None:
        old = self.files()[path][offset]
        store = self.emulator.store
        parts = (self.prefix + path).split("/")
        store.write_range(store.share(SHARE), parts, offset, bytes([old ^ 0xFF]))


@dataclass
class Site:
    """A test's repository on one remote storage, and the CLI pointed at it."""

    cli: Cli
    remote: Remote
    tmp: Path

    def configure(
        self, retention: tuple[int, int] | None = None, index_key: str | None = None
    ) -> None:
        """The quickstart on this storage; ``index_key`` is a spec.encryption.indexKey value."""
        config = self.cli.configure(self.remote.storage(), retention=retention)
        if index_key is not None:
            text = config.read_text()
            assert CERTIFICATE_LINE in text
            config.write_text(
                text.replace(CERTIFICATE_LINE, f"{CERTIFICATE_LINE}    indexKey: {index_key}\n")
            )

    def objects(self) -> Format2Objects:
        return Format2Objects(self.remote.files())

    def new_cache(self) -> dict[str, str]:
        """The environment of a host whose file cache is empty (a fresh host)."""
        folder = self.tmp / f"cache-{secrets.token_hex(4)}"
        folder.mkdir()
        return {CACHE_VAR: str(folder)}

    def restore(self, backup: str, target: Path, env: dict[str, str] | None = None) -> None:
        self.cli.ok(
            "restore", "-f", self.cli.config, "--backup", backup,
            "--key", self.cli.workspace.private_key, "--to", target, env=env,
        )  # fmt: skip


@pytest.fixture(params=["smb", "azure"])
def site(request: pytest.FixtureRequest, workspace: Workspace, run: Runner, tmp_path: Path) -> Site:
    cli = Cli(run, workspace)
    folder = f"f2-{secrets.token_hex(4)}"
    remote: Remote
    if request.param == "smb":
        server: SambaServer = request.getfixturevalue("samba_server")
        cli.env[PASSWORD_VAR] = server.password
        remote = SmbRemote(server, folder)
    else:
        emulator: AzureFilesEmulator = request.getfixturevalue("azure_emulator")
        emulator.clear_faults()
        cli.env[KEY_VAR] = emulator.account_key
        remote = AzureRemote(emulator, folder)
    cache = tmp_path / "cache"
    cache.mkdir()
    cli.env[CACHE_VAR] = str(cache)
    made = Site(cli, remote, tmp_path)
    made.configure()
    return made


# -- what a backup holds, and what a restore gives back -------------------------------


def sample_region(workspace: Workspace) -> dict[str, Any]:
    """What the quickstart's sources hold now, as a restore must give it back."""
    stamp = workspace.examples / "stamp"
    deployment = tree_snapshot(stamp / "deployment")
    deployment.pop("scale-units/su-1.json.tmp", None)  # excluded by the configuration
    with sqlite3.connect(stamp / "arm" / "resource-manager.db") as db:
        rows = list(db.iterdump())
    return {
        "deployment-inputs": deployment,
        "root-ca": tree_snapshot(stamp / "ca"),
        "identity": tree_snapshot(stamp / "identity"),
        "resource-manager": rows,
        "key-vault": vault_export(workspace),
    }


def restored_region(target: Path) -> dict[str, Any]:
    with sqlite3.connect(target / "resource-manager" / "resource-manager.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rows = list(db.iterdump())
    return {
        "deployment-inputs": tree_snapshot(target / "deployment-inputs"),
        "root-ca": tree_snapshot(target / "root-ca"),
        "identity": tree_snapshot(target / "identity"),
        "resource-manager": rows,
        "key-vault": (target / "key-vault" / "key-vault.dump").read_bytes(),
    }


def assert_restores(site: Site, expected: dict[str, dict[str, Any]]) -> None:
    """Every backup of ``expected`` (id -> its sample region) restores byte for byte."""
    for backup_id, region in expected.items():
        target = site.tmp / f"restored-{backup_id}-{secrets.token_hex(2)}"
        site.restore(backup_id, target)
        assert restored_region(target) == region, f"backup {backup_id} restored differently"


def change_region(workspace: Workspace) -> None:
    """Rewrite a file of the deployment tree with new random content."""
    (workspace.examples / "stamp" / "deployment" / "noise.bin").write_bytes(os.urandom(NOISE))


def backup(site: Site, days: float, env: dict[str, str] | None = None) -> str:
    """Apply as ``days`` after now (a backup is due); return the backup it made."""
    return made_backup(site.cli.apply("--now", days_from_now(days), env=env))


# -- 1. the pack objects -----------------------------------------------------------------


def test_a_backup_lands_as_packs_and_an_unchanged_one_adds_no_pack_and_both_restore(
    site: Site,
) -> None:
    first = made_backup(site.cli.apply())
    stored = assert_format2_layout(site.remote.files(), [first])
    plaintext = vault_export(site.cli.workspace)
    assert all(plaintext not in data for data in stored.files.values()), "stored unencrypted"

    second = backup(site, 1)
    after = assert_format2_layout(site.remote.files(), [first, second])
    assert after.packs == stored.packs, "an unchanged backup added or changed a pack"
    region = sample_region(site.cli.workspace)
    assert_restores(site, {first: region, second: region})


def test_a_fresh_host_with_an_empty_cache_adds_no_pack_for_unchanged_data(site: Site) -> None:
    # A large file: the kind of file the cache lets a host skip reading.
    change_region(site.cli.workspace)
    made_backup(site.cli.apply())
    packs = site.objects().packs
    second = backup(site, 1, env=site.new_cache())
    assert site.objects().packs == packs, "a host without the file cache stored chunks again"
    unchanged = sample_region(site.cli.workspace)
    # A changed file does add a pack: the comparison above would see one.
    change_region(site.cli.workspace)
    third = backup(site, 2, env=site.new_cache())
    assert len(site.objects().packs) == len(packs) + 1
    assert_restores(site, {second: unchanged, third: sample_region(site.cli.workspace)})


# -- 2. damage in a shared pack --------------------------------------------------------


def test_a_flipped_byte_in_a_shared_pack_marks_every_backup_using_it_corrupt(site: Site) -> None:
    first = made_backup(site.cli.apply())
    second = backup(site, 1)
    [pack] = site.objects().packs
    # Inside the first record (after its key id and nonce): a chunk both backups use.
    site.remote.flip(pack, 40)

    checked = site.cli("verify", "-f", site.cli.config, "--backup", "all")
    assert checked.code == 1, checked.text
    named = set()
    for backup_id in (first, second):
        [line] = [x for x in checked.text.splitlines() if f"backup {backup_id} is damaged" in x]
        found = re.search(rf"chunk ([0-9a-f]{{16}}) in {pack} in .* is damaged", line)
        assert found, line
        named.add(found[1])
    assert len(named) == 1, f"the two backups name different chunks: {named}"
    listed = {b["id"]: b["status"] for b in site.cli.listing()}
    assert listed == {first: "Corrupt", second: "Corrupt"}


# -- 3. the index key ------------------------------------------------------------------


def index_key_file(site: Site) -> Path:
    path = site.tmp / f"index-{secrets.token_hex(4)}.key"
    site.cli.ok("keys", "create", "--index-key", path)
    return path


def test_a_configured_index_key_that_is_not_the_repositorys_is_refused_before_writing(
    site: Site,
) -> None:
    site.configure(index_key=f"{{file: {index_key_file(site)}}}")
    made_backup(site.cli.apply())
    before = site.remote.files()

    other = index_key_file(site)
    site.configure(index_key=f"{{file: {other}}}")
    refused = [
        site.cli("plan", "-f", site.cli.config, "--now", days_from_now(1)),
        site.cli.apply("--now", days_from_now(1)),
    ]
    for result in refused:
        assert_one_sentence(result, "spec.encryption.indexKey", "is not the index key of")
        assert other.read_text().strip() not in result.text
    assert site.remote.files() == before, "something was written with the wrong index key"


def test_the_private_key_alone_restores_and_verifies_without_the_index_key(site: Site) -> None:
    configured = index_key_file(site)
    site.configure(index_key=f"{{env: {INDEX_KEY_VAR}}}")
    with_key = {INDEX_KEY_VAR: configured.read_text().strip()}
    first = made_backup(site.cli.apply(env=with_key))
    second = backup(site, 1, env=with_key)
    stored = site.remote.files()
    assert configured.read_text().strip().encode() not in stored["keys/index.json"]

    # Another host: the same configuration, the private key, no index key at all.
    assert INDEX_KEY_VAR not in site.cli.env and INDEX_KEY_VAR not in os.environ
    assert succeeded_ids(site.cli.listing()) == [first, second]
    region = sample_region(site.cli.workspace)
    assert_restores(site, {first: region, second: region})
    verified = site.cli.ok(
        "verify", "-f", site.cli.config, "--backup", "all", "--key",
        site.cli.workspace.private_key,
    )  # fmt: skip
    assert "2 intact, 0 failed" in verified.out, verified.text


# -- 4. kill -9 in a backup and in reclaiming -------------------------------------------


def killed(site: Site, point: str, days: float) -> None:
    """An apply as ``days`` after now that dies (as kill -9 would) at failpoint ``point``."""
    died = site.cli.apply(
        "--now", days_from_now(days), env={"BACKUPCTL_FAILPOINTS": f"{point}:exit"}
    )
    assert died.code == 137, f"failpoint {point} was not reached: {died.text}"


def pack_bytes(site: Site) -> int:
    return sum(len(v) for v in site.objects().packs.values())


@pytest.mark.parametrize(
    "point",
    [
        "object-upload",  # a chunk list fully written under a temporary name
        "pack-written",  # the run's pack stored, its index delta and manifest not
    ],
)
def test_a_backup_killed_is_cleaned_up_by_the_next_apply_and_every_backup_restores(
    site: Site, point: str
) -> None:
    change_region(site.cli.workspace)
    first = made_backup(site.cli.apply())
    expected = {first: sample_region(site.cli.workspace)}
    change_region(site.cli.workspace)

    killed(site, point, 1)
    assert succeeded_ids(site.cli.listing()) == [first]

    recovered = site.cli.apply("--now", days_from_now(1))
    assert "staging.cleanup: done" in recovered.out, recovered.text
    second = made_backup(recovered)
    expected[second] = sample_region(site.cli.workspace)
    stored = assert_format2_layout(site.remote.files(), expected)
    # The killed run's pack, which no index names, is gone: one pack a backup.
    assert len(stored.packs) == 2, sorted(stored.packs)
    assert succeeded_ids(site.cli.listing()) == [first, second]
    assert_restores(site, expected)


def killed_in_reclaiming(site: Site) -> tuple[str, str]:
    """Backups a day apart with different noise; ten days later an apply makes a
    third, prunes the first and dies reclaiming its chunks, the index switched."""
    site.configure(retention=(1, 1))
    change_region(site.cli.workspace)
    first = made_backup(site.cli.apply())
    change_region(site.cli.workspace)
    killed(site, "reclaim-pointer-written", 10)
    [second] = succeeded_ids(site.cli.listing())
    assert second != first
    return first, second


def test_reclaiming_killed_after_the_index_switch_loses_no_kept_chunk(site: Site) -> None:
    first, second = killed_in_reclaiming(site)
    region = sample_region(site.cli.workspace)
    assert_restores(site, {second: region})
    assert pack_bytes(site) > 2 * NOISE, "both backups' noise should still be stored"

    # The next apply and backup still find every chunk the kept backup uses.
    assert site.cli.apply("--now", days_from_now(10)).code == 0
    change_region(site.cli.workspace)
    third = backup(site, 10.6)  # a backup is due; the second is kept (1 day)
    stored = assert_format2_layout(site.remote.files(), [second, third])
    assert stored.backup(first) == set()
    assert_restores(site, {second: region, third: sample_region(site.cli.workspace)})


def test_reclaiming_killed_after_the_index_switch_is_finished_by_the_next_apply(
    site: Site,
) -> None:
    killed_in_reclaiming(site)
    recovered = site.cli.apply("--now", days_from_now(10))
    assert recovered.code == 0, recovered.text
    assert "chunks.reclaim: done" in recovered.out, recovered.text
    assert pack_bytes(site) < NOISE * 1.5, "the pruned backup's chunks are still stored"
