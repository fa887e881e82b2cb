"""Backends the storage conformance suite runs against.

Each backend is a picklable factory so that tests can open the same storage
from another process (exclusive-create races). A backend that needs a server
defines a fixture named ``<backend>_storage_factory`` in its own module under
``tests/storage/`` (starting that server), and is listed in BACKENDS.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from reconciler.storage.base import Storage
from reconciler.storage.local import LocalStorage
from tests.storage.backend_smb import smb_backend_enabled

StorageFactory = Callable[[], Storage]

# One entry per backend; each names a fixture that yields a StorageFactory
# for a fresh, empty repository folder.
BACKENDS = ["local", "azure", "azure_sas"]
if smb_backend_enabled():
    BACKENDS.append("smb")


@dataclass(frozen=True)
class LocalFactory:
    root: Path

    def __call__(self) -> Storage:
        return LocalStorage(self.root)


@pytest.fixture
def local_storage_factory(tmp_path: Path) -> StorageFactory:
    (tmp_path / "location").mkdir(exist_ok=True)
    return LocalFactory(tmp_path / "location" / f"r-{secrets.token_hex(3)}")


@pytest.fixture(params=BACKENDS)
def storage_factory(request: pytest.FixtureRequest) -> StorageFactory:
    factory: StorageFactory = request.getfixturevalue(f"{request.param}_storage_factory")
    return factory


@pytest.fixture
def storage(storage_factory: StorageFactory) -> Storage:
    store = storage_factory()
    store.ensure_root()
    return store
