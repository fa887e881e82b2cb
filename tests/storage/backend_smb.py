"""The SMB backend of the storage conformance suite, on the session Samba server."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

import pytest

from reconciler.storage.base import Storage
from reconciler.storage.smb import SmbStorage
from tests.servers.fixtures import in_ci
from tests.servers.samba import SambaServer, find_smbd


def smb_backend_enabled() -> bool:
    """Whether the conformance suite runs against SMB: always in CI (where a
    broken Samba must fail), elsewhere when smbd is installed."""
    return in_ci() or find_smbd() is not None


@dataclass(frozen=True)
class SmbFactory:
    """Makes SmbStorage objects for one folder; picklable for other processes."""

    host: str
    port: int
    share: str
    folder: str
    username: str
    password: str = field(repr=False)

    def __call__(self) -> Storage:
        return SmbStorage(
            self.host,
            self.share,
            self.folder,
            port=self.port,
            username=self.username,
            password=self.password,
        )


@pytest.fixture
def smb_storage_factory(samba_server: SambaServer) -> SmbFactory:
    """A factory for a fresh, random folder on the 'backups' share."""
    return SmbFactory(
        host=samba_server.host,
        port=samba_server.port,
        share="backups",
        folder=f"conformance/r-{secrets.token_hex(4)}",
        username=samba_server.username,
        password=samba_server.password,
    )
