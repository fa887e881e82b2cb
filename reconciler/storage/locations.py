"""Where a repository lives, in the storage layer's own terms.

The configuration model (``reconciler.spec``) describes locations with secret
references; a higher layer resolves those and hands the factory these plain
values, so that nothing in ``reconciler.storage`` depends on the configuration
format. Secrets are fields with ``repr=False``: a stray log line or traceback
never prints them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class LocalConfig:
    """A folder on a local (or locally mounted) file system."""

    path: Path


@dataclass(frozen=True)
class SmbConfig:
    """A folder on an SMB share, with the resolved password."""

    server: str
    share: str
    folder: str
    port: int
    username: str
    password: str = field(repr=False)
    require_encryption: bool = False


@dataclass(frozen=True)
class AccountKey:
    """The storage account's shared key (base64)."""

    key: str = field(repr=False)


@dataclass(frozen=True)
class SasToken:
    """A shared access signature, account or share level (with or without '?')."""

    token: str = field(repr=False)


@dataclass(frozen=True)
class DefaultCredential:
    """azure-identity's DefaultAzureCredential (environment, managed identity, CLI...)."""


@dataclass(frozen=True)
class ClientSecret:
    """An Entra ID application (service principal) with a client secret."""

    tenant_id: str
    client_id: str
    secret: str = field(repr=False)


AzureCredential = AccountKey | SasToken | DefaultCredential | ClientSecret


@dataclass(frozen=True)
class AzureConfig:
    """A directory ('' is the root) in an Azure file share."""

    account_url: str
    share: str
    directory: str
    credential: AzureCredential


LocationConfig = LocalConfig | SmbConfig | AzureConfig
