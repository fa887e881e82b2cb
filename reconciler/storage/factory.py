"""Opening the Storage for a configured location, with its resolved credentials."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from reconciler.spec.model import (
    AccountKeyAuth,
    AzureAuth,
    AzureFileShareLocation,
    ClientSecretAuth,
    LocalLocation,
    SasTokenAuth,
    SmbLocation,
    StorageLocation,
)
from reconciler.spec.secrets import resolve_secret
from reconciler.storage.base import Storage
from reconciler.storage.local import LocalStorage

if TYPE_CHECKING:
    # The SDK-backed backends are imported only when a configuration uses them:
    # importing azure-core costs a noticeable part of a second.
    from reconciler.storage.azure_files import AzureCredential


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

    Raises ConfigError for unresolvable secrets."""
    if isinstance(location, LocalLocation):
        return LocalStorage(location.path / repository)
    if isinstance(location, SmbLocation):
        from reconciler.storage.smb import SmbStorage

        return SmbStorage(
            location.server,
            location.share,
            _join(location.folder, repository),
            port=location.port,
            username=location.username,
            password=resolve_secret(location.password).value,
            require_encryption=location.require_encryption,
        )
    from reconciler.storage.azure_files import AzureFilesStorage

    return AzureFilesStorage(
        location.account_url,
        location.share,
        _join(location.directory, repository),
        _azure_credential(location.auth),
    )


def _join(folder: str, name: str) -> str:
    return f"{folder.strip('/')}/{name}" if folder.strip("/") else name


def _azure_credential(auth: AzureAuth) -> AzureCredential:
    from reconciler.storage.azure_files import (
        AccountKey,
        ClientSecret,
        DefaultCredential,
        SasToken,
    )

    if isinstance(auth, AccountKeyAuth):
        return AccountKey(resolve_secret(auth.key).value)
    if isinstance(auth, SasTokenAuth):
        return SasToken(resolve_secret(auth.token).value)
    if isinstance(auth, ClientSecretAuth):
        return ClientSecret(auth.tenant_id, auth.client_id, resolve_secret(auth.secret).value)
    return DefaultCredential()
