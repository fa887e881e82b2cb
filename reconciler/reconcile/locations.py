"""The configured storage locations, in the terms of the storage layer.

``reconciler.storage`` does not know the configuration model; this is where a
``spec.model`` location, its secret references resolved, becomes the storage
layer's ``LocationConfig``."""

from __future__ import annotations

from reconciler.spec.model import (
    AccountKeyAuth,
    AzureAuth,
    ClientSecretAuth,
    LocalLocation,
    SasTokenAuth,
    SmbLocation,
    StorageLocation,
)
from reconciler.spec.secrets import resolve_secret
from reconciler.storage import factory
from reconciler.storage.base import Storage
from reconciler.storage.locations import (
    AccountKey,
    AzureConfig,
    AzureCredential,
    ClientSecret,
    DefaultCredential,
    LocalConfig,
    LocationConfig,
    SasToken,
    SmbConfig,
)


def location_config(location: StorageLocation) -> LocationConfig:
    """``location`` with its secrets resolved. Raises ConfigError for a secret
    that cannot be resolved."""
    if isinstance(location, LocalLocation):
        return LocalConfig(location.path)
    if isinstance(location, SmbLocation):
        return SmbConfig(
            location.server,
            location.share,
            location.folder,
            location.port,
            location.username,
            resolve_secret(location.password).value,
            location.require_encryption,
        )
    return AzureConfig(
        location.account_url,
        location.share,
        location.directory,
        _azure_credential(location.auth),
    )


def _azure_credential(auth: AzureAuth) -> AzureCredential:
    if isinstance(auth, AccountKeyAuth):
        return AccountKey(resolve_secret(auth.key).value)
    if isinstance(auth, SasTokenAuth):
        return SasToken(resolve_secret(auth.token).value)
    if isinstance(auth, ClientSecretAuth):
        return ClientSecret(auth.tenant_id, auth.client_id, resolve_secret(auth.secret).value)
    return DefaultCredential()


def location_credentials(location: StorageLocation) -> factory.Credentials | None:
    """The resolved credentials of ``location``; None when it takes none.

    Raises ConfigError when a secret cannot be resolved."""
    return factory.credentials_for(location_config(location))


def open_storage(location: StorageLocation, repository: str) -> Storage:
    """The Storage rooted at ``<location>/<repository>/``.

    Raises ConfigError for unresolvable secrets."""
    return factory.open_storage(location_config(location), repository)
