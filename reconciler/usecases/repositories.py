"""Opening the repository a use case works on."""

from __future__ import annotations

from reconciler.errors import BackupctlError
from reconciler.reconcile.prepared import prepare
from reconciler.repository.store import Repository
from reconciler.spec.model import BackupConfiguration


def open_repository(config: BackupConfiguration) -> Repository:
    """Return the configuration's repository.

    Raises BackupctlError when it does not exist (a query or a restore never
    creates one)."""
    repository = prepare(config).repository
    if not repository.exists():
        raise BackupctlError(f"{config.name}: no repository exists at {config.storage.describe()}")
    return repository


def known_thumbprints(repository: Repository) -> dict[str, str]:
    """Return public-key SHA-256 -> certificate thumbprint from the key history,
    so that a missing key can be named by the certificate it belongs to."""
    settings = repository.read_settings()
    if settings is None:
        return {}
    return {k.public_key_sha256: k.thumbprint for k in settings.key_history}
