"""The desired state: frozen dataclasses built from a validated configuration.

After loading, nothing in backupctl touches the raw YAML dictionaries. Secret
values are not part of the model: a ``SecretRef`` says where a secret lives,
and ``reconciler.spec.secrets`` resolves it when (and only when) needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from reconciler.crypto.certificates import Certificate


@dataclass(frozen=True)
class Origin:
    """Where an object was declared, for messages: ``region.yaml:12``."""

    file: Path
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class SecretRef:
    """A reference to a secret: an environment variable or a file, never a value."""

    env: str | None = None
    file: Path | None = None
    field: str = ""
    origin: Origin | None = None

    def describe(self) -> str:
        if self.env is not None:
            return f"environment variable {self.env}"
        return f"file {self.file}"


@dataclass(frozen=True)
class LocalLocation:
    path: Path

    def describe(self) -> str:
        return f"local folder {self.path}"


@dataclass(frozen=True)
class SmbLocation:
    server: str
    share: str
    folder: str
    port: int
    username: str
    password: SecretRef
    require_encryption: bool

    def describe(self) -> str:
        folder = f"/{self.folder}" if self.folder else ""
        port = "" if self.port == 445 else f" (port {self.port})"
        return f"SMB share //{self.server}/{self.share}{folder}{port}"


@dataclass(frozen=True)
class AccountKeyAuth:
    key: SecretRef


@dataclass(frozen=True)
class SasTokenAuth:
    token: SecretRef


@dataclass(frozen=True)
class DefaultCredentialAuth:
    pass


@dataclass(frozen=True)
class ClientSecretAuth:
    tenant_id: str
    client_id: str
    secret: SecretRef


AzureAuth = AccountKeyAuth | SasTokenAuth | DefaultCredentialAuth | ClientSecretAuth


@dataclass(frozen=True)
class AzureFileShareLocation:
    account_url: str
    share: str
    directory: str
    auth: AzureAuth

    def describe(self) -> str:
        directory = f"/{self.directory}" if self.directory else ""
        return f"Azure file share {self.account_url.rstrip('/')}/{self.share}{directory}"


StorageLocation = LocalLocation | SmbLocation | AzureFileShareLocation


@dataclass(frozen=True)
class PreviousKey:
    key_file: Path
    passphrase: SecretRef | None


@dataclass(frozen=True)
class Encryption:
    certificate_file: Path
    certificate: Certificate
    rewrap_existing: bool
    previous_keys: tuple[PreviousKey, ...]
    index_key: SecretRef | None = None
    """spec.encryption.indexKey; None when the repository is to keep its own
    (``secrets.resolve_index_key`` gives the 32 bytes)."""


@dataclass(frozen=True)
class Schedule:
    enabled: bool = True
    frequency_hours: int = 12
    retry_after_minutes: int = 30


@dataclass(frozen=True)
class Retention:
    days: int = 7
    min_backups: int = 2


@dataclass(frozen=True)
class VerificationPolicy:
    """spec.verification: how often stored backups are checked (a check's result is
    backup.verify.Verification)."""

    frequency_days: int


@dataclass(frozen=True)
class FilesSource:
    name: str
    path: Path
    exclude: tuple[str, ...]

    kind = "files"


@dataclass(frozen=True)
class SqliteSource:
    name: str
    path: Path

    kind = "sqlite"


@dataclass(frozen=True)
class CommandSource:
    name: str
    backup: tuple[str, ...]
    restore: tuple[str, ...] | None
    timeout_seconds: int
    workdir: Path

    kind = "command"


Source = FilesSource | SqliteSource | CommandSource


@dataclass(frozen=True)
class BackupConfiguration:
    """One validated ``BackupConfiguration`` document."""

    name: str
    origin: Origin
    storage: StorageLocation
    migration_from: StorageLocation | None
    encryption: Encryption
    schedule: Schedule
    retention: Retention
    trigger: str
    verification: VerificationPolicy | None
    sources: tuple[Source, ...]
    digest: str
    """SHA-256 of the document as written: a saved plan is stale when it changes."""

    def source(self, name: str) -> Source | None:
        return next((s for s in self.sources if s.name == name), None)
