"""Opt-in round trip against a real Azure storage account.

Set ``BACKUPCTL_LIVE_AZURE_ACCOUNT_URL`` (https://ACCOUNT.file.core.windows.net),
``BACKUPCTL_LIVE_AZURE_SHARE`` (an existing share) and either
``BACKUPCTL_LIVE_AZURE_ACCOUNT_KEY`` or ``BACKUPCTL_LIVE_AZURE_SAS`` (needs
permissions rwdlc and resource types sco). The test works in a random
top-level directory of the share and deletes it afterwards.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest

from reconciler.errors import ObjectExistsError, ObjectNotFoundError
from reconciler.storage.azure import (
    AccountKey,
    AzureCredential,
    AzureFilesStorage,
    SasToken,
)
from reconciler.storage.azure.ranges import RANGE_SIZE
from reconciler.storage.base import TEMP_MARKER

URL_VAR = "BACKUPCTL_LIVE_AZURE_ACCOUNT_URL"
SHARE_VAR = "BACKUPCTL_LIVE_AZURE_SHARE"
KEY_VAR = "BACKUPCTL_LIVE_AZURE_ACCOUNT_KEY"
SAS_VAR = "BACKUPCTL_LIVE_AZURE_SAS"


def _credential() -> AzureCredential | None:
    if os.environ.get(KEY_VAR):
        return AccountKey(os.environ[KEY_VAR])
    if os.environ.get(SAS_VAR):
        return SasToken(os.environ[SAS_VAR])
    return None


_CONFIGURED = bool(os.environ.get(URL_VAR) and os.environ.get(SHARE_VAR) and _credential())

pytestmark = [
    pytest.mark.live_azure,
    pytest.mark.skipif(
        not _CONFIGURED,
        reason=f"set {URL_VAR}, {SHARE_VAR} and {KEY_VAR} (or {SAS_VAR}) to run against "
        "a real Azure storage account",
    ),
]


@pytest.fixture
def live_storage() -> Iterator[AzureFilesStorage]:
    credential = _credential()
    assert credential is not None
    directory = f"backupctl-live-{secrets.token_hex(4)}"
    storage = AzureFilesStorage(os.environ[URL_VAR], os.environ[SHARE_VAR], directory, credential)
    try:
        yield storage
    finally:
        storage.delete_tree("")


def test_round_trip_on_a_real_share(live_storage: AzureFilesStorage) -> None:
    storage = live_storage
    storage.ensure_root()
    assert storage.root_exists()

    storage.write_atomic("settings.json", b"v1")
    storage.write_atomic("settings.json", b"v2")  # rename over an existing file
    assert storage.read("settings.json") == b"v2"

    big = os.urandom(RANGE_SIZE + 12345)  # two ranges, so one resize
    with storage.open_write("backups/b1/data.enc") as out:
        out.write(big)
    assert storage.size("backups/b1/data.enc") == len(big)
    with storage.open_read("backups/b1/data.enc") as stream:
        assert stream.read() == big

    storage.create_exclusive("lock.json", b"me")
    with pytest.raises(ObjectExistsError):
        storage.create_exclusive("lock.json", b"someone else")
    assert storage.read("lock.json") == b"me"

    names = [(e.name, e.is_dir) for e in storage.list_dir("")]
    assert names == [("backups", True), ("lock.json", False), ("settings.json", False)]
    assert not [e for e in storage.list_dir("backups/b1") if TEMP_MARKER in e.name]

    storage.delete("lock.json")
    assert not storage.exists("lock.json")
    with pytest.raises(ObjectNotFoundError):
        storage.read("lock.json")
    storage.delete_tree("backups")
    assert storage.list_dir("backups") == []
