"""Backends the storage conformance suite runs against.

Each backend is a picklable factory so that tests can open the same storage
from another process (exclusive-create races). A backend that needs a server
defines a fixture named ``<backend>_storage_factory`` in its own module under
``tests/storage/`` (starting that server), and is listed in BACKENDS.

``memory`` (the fake most unit tests stand on) and ``fenced`` (the wrapper
every apply writes through, here over a local folder) run the same suite, so
that what a unit test shows on them holds for the real backends. The memory
fake lives in one process: races between processes leave it out
(SHARED_BACKENDS).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from reconciler.repository.fenced import FencedStorage
from reconciler.storage.base import Storage
from reconciler.storage.local import LocalStorage
from reconciler.storage.memory import MemoryStorage
from tests.storage.backend_smb import smb_backend_enabled

StorageFactory = Callable[[], Storage]

# One entry per backend; each names a fixture that yields a StorageFactory
# for a fresh, empty repository folder.
BACKENDS = ["local", "memory", "fenced", "azure", "azure_sas"]
if smb_backend_enabled():
    BACKENDS.append("smb")
SHARED_BACKENDS = [b for b in BACKENDS if b != "memory"]
"""Backends that another process can open too."""


@dataclass(frozen=True)
class LocalFactory:
    root: Path

    def __call__(self) -> Storage:
        return LocalStorage(self.root)


@dataclass(frozen=True)
class MemoryFactory:
    """Every call gives the same MemoryStorage: it is the repository folder."""

    storage: MemoryStorage

    def __call__(self) -> Storage:
        return self.storage


def _lock_still_held() -> None:
    """The guard of a FencedStorage whose writer never loses the lock."""


@dataclass(frozen=True)
class FencedFactory:
    inner: LocalFactory

    def __call__(self) -> Storage:
        return FencedStorage(self.inner(), _lock_still_held)


def _local_factory(tmp_path: Path) -> LocalFactory:
    (tmp_path / "location").mkdir(exist_ok=True)
    return LocalFactory(tmp_path / "location" / f"r-{secrets.token_hex(3)}")


@pytest.fixture
def local_storage_factory(tmp_path: Path) -> StorageFactory:
    return _local_factory(tmp_path)


@pytest.fixture
def memory_storage_factory() -> StorageFactory:
    return MemoryFactory(MemoryStorage())


@pytest.fixture
def fenced_storage_factory(tmp_path: Path) -> StorageFactory:
    return FencedFactory(_local_factory(tmp_path))


@pytest.fixture(params=BACKENDS)
def storage_factory(request: pytest.FixtureRequest) -> StorageFactory:
    factory: StorageFactory = request.getfixturevalue(f"{request.param}_storage_factory")
    return factory


@pytest.fixture(params=SHARED_BACKENDS)
def shared_storage_factory(request: pytest.FixtureRequest) -> StorageFactory:
    """Like storage_factory, for the backends another process can open."""
    factory: StorageFactory = request.getfixturevalue(f"{request.param}_storage_factory")
    return factory


@pytest.fixture
def storage(storage_factory: StorageFactory) -> Storage:
    store = storage_factory()
    store.ensure_root()
    return store
