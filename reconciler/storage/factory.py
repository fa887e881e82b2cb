"""Opening the Storage for a configured location, with its resolved credentials."""

from __future__ import annotations

from dataclasses import dataclass

from reconciler.errors import BackendUnavailableError
from reconciler.spec.model import (
    AzureFileShareLocation,
    LocalLocation,
    SmbLocation,
    StorageLocation,
)
from reconciler.spec.secrets import resolve_secret
from reconciler.storage.base import Storage
from reconciler.storage.local import LocalStorage


@dataclass(frozen=True)
class Credentials:
    """What identifies the caller to a location, for fingerprinting. Never printed."""

    principal: str
    material: bytes


def location_credentials(location: StorageLocation) -> Credentials | None:
    """The resolved credentials of ``location``; None when it takes none.

    Raises ConfigError when a secret cannot be resolved."""
    if isinstance(location, SmbLocation):
        password = resolve_secret(location.password).value
        material = f"smb\0{location.username}\0{password}".encode()
        return Credentials(location.username, material)
    if isinstance(location, AzureFileShareLocation):
        from reconciler.spec.model import AccountKeyAuth, ClientSecretAuth, SasTokenAuth

        auth = location.auth
        if isinstance(auth, AccountKeyAuth):
            return Credentials(
                "the account key", b"key\0" + resolve_secret(auth.key).value.encode()
            )
        if isinstance(auth, SasTokenAuth):
            token = resolve_secret(auth.token).value
            return Credentials("the SAS token", b"sas\0" + token.encode())
        if isinstance(auth, ClientSecretAuth):
            secret = resolve_secret(auth.secret).value
            material = f"client\0{auth.tenant_id}\0{auth.client_id}\0{secret}".encode()
            return Credentials(f"client {auth.client_id}", material)
        return None
    return None


def open_storage(location: StorageLocation, repository: str) -> Storage:
    """The Storage rooted at ``<location>/<repository>/``.

    Raises ConfigError for unresolvable secrets, BackendUnavailableError for a
    backend this build does not have."""
    if isinstance(location, LocalLocation):
        return LocalStorage(location.path / repository)
    kind = "smb" if isinstance(location, SmbLocation) else "azureFileShare"
    raise BackendUnavailableError(
        f"the {kind} storage backend is not available yet in this version of backupctl;"
        " use local storage"
    )
