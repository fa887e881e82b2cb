"""Backends the storage conformance suite runs against.

Each backend is a picklable factory so that tests can open the same storage
from another process (exclusive-create races). A backend whose server is
needed registers itself here with a fixture that starts that server.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from reconciler.storage.base import Storage
from reconciler.storage.local import LocalStorage


@dataclass(frozen=True)
class LocalFactory:
    root: Path

    def __call__(self) -> Storage:
        return LocalStorage(self.root)


StorageFactory = Callable[[], Storage]


@pytest.fixture(params=["local"])
def storage_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StorageFactory]:
    name = request.param
    if name == "local":
        yield LocalFactory(tmp_path / "repo" / f"r-{secrets.token_hex(3)}")
    else:  # pragma: no cover - a new backend forgot to add its branch
        raise AssertionError(f"unknown backend {name}")


@pytest.fixture
def storage(storage_factory: StorageFactory) -> Storage:
    store = storage_factory()
    store.ensure_root()
    return store
