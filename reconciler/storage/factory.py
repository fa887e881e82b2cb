"""Opening the Storage for a location, and the credentials that identify its user.

Takes the storage layer's own ``LocationConfig`` (secrets already resolved);
the configuration model is mapped onto it by a higher layer
(``reconciler.reconcile.locations``)."""

from __future__ import annotations

from dataclasses import dataclass

from reconciler.storage.base import Storage
from reconciler.storage.local import LocalStorage
from reconciler.storage.locations import (
    AccountKey,
    AzureConfig,
    ClientSecret,
    LocalConfig,
    LocationConfig,
    SasToken,
    SmbConfig,
)


@dataclass(frozen=True)
class Credentials:
    """What identifies the caller to a location, for fingerprinting. Never printed."""

    principal: str
    material: bytes


def credentials_for(location: LocationConfig) -> Credentials | None:
    """The credentials of ``location``; None when it takes none (a local folder,
    an Azure identity found by DefaultAzureCredential)."""
    if isinstance(location, SmbConfig):
        material = f"smb\0{location.username}\0{location.password}".encode()
        return Credentials(location.username, material)
    if isinstance(location, AzureConfig):
        credential = location.credential
        if isinstance(credential, AccountKey):
            return Credentials("the account key", b"key\0" + credential.key.encode())
        if isinstance(credential, SasToken):
            return Credentials("the SAS token", b"sas\0" + credential.token.encode())
        if isinstance(credential, ClientSecret):
            material = (
                f"client\0{credential.tenant_id}\0{credential.client_id}\0{credential.secret}"
            ).encode()
            return Credentials(f"client {credential.client_id}", material)
    return None


def open_storage(location: LocationConfig, repository: str) -> Storage:
    """The Storage rooted at ``<location>/<repository>/`` (no I/O yet)."""
    if isinstance(location, LocalConfig):
        return LocalStorage(location.path / repository)
    # The SDK-backed backends are imported only when a configuration uses them:
    # importing azure-core costs a noticeable part of a second.
    if isinstance(location, SmbConfig):
        from reconciler.storage.smb import SmbStorage

        return SmbStorage(
            location.server,
            location.share,
            _join(location.folder, repository),
            port=location.port,
            username=location.username,
            password=location.password,
            require_encryption=location.require_encryption,
        )
    from reconciler.storage.azure import AzureFilesStorage

    return AzureFilesStorage(
        location.account_url,
        location.share,
        _join(location.directory, repository),
        location.credential,
    )


def _join(folder: str, name: str) -> str:
    return f"{folder.strip('/')}/{name}" if folder.strip("/") else name
