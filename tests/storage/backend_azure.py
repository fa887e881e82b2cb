"""Azure Files backends for the conformance suite, served by the test emulator.

``azure`` authenticates with the account key (SharedKey), ``azure_sas`` with an
account SAS passed as a string; both go through the unmodified SDK. One
emulator serves the whole session; each test gets a fresh random directory,
removed afterwards.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from reconciler.storage.azure import AccountKey, AzureCredential, AzureFilesStorage, SasToken
from reconciler.storage.base import Storage
from tests.azure_emulator import AzureFilesEmulator

SHARE = "backups"


@dataclass(frozen=True)
class AzureFactory:
    """Opens the same Azure Files repository folder, in this or another process."""

    account_url: str
    share: str
    directory: str
    credential: AzureCredential

    def __call__(self) -> Storage:
        return AzureFilesStorage(self.account_url, self.share, self.directory, self.credential)


@pytest.fixture(scope="session")
def azure_emulator() -> Iterator[AzureFilesEmulator]:
    with AzureFilesEmulator() as emulator:
        emulator.create_share(SHARE)
        yield emulator


def _fresh_factory(emulator: AzureFilesEmulator, credential: AzureCredential) -> AzureFactory:
    # Two levels, so that the root's parents must be created as well.
    directory = f"conformance/r-{secrets.token_hex(4)}"
    return AzureFactory(emulator.account_url, SHARE, directory, credential)


@pytest.fixture
def azure_storage_factory(azure_emulator: AzureFilesEmulator) -> Iterator[AzureFactory]:
    factory = _fresh_factory(azure_emulator, AccountKey(azure_emulator.account_key))
    yield factory
    azure_emulator.remove(SHARE, factory.directory)


@pytest.fixture
def azure_sas_storage_factory(azure_emulator: AzureFilesEmulator) -> Iterator[AzureFactory]:
    factory = _fresh_factory(azure_emulator, SasToken(azure_emulator.account_sas("rwdlc")))
    yield factory
    azure_emulator.remove(SHARE, factory.directory)
