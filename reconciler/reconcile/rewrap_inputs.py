"""What ``key.rewrap`` planning needs from outside the pure planner.

The previous private keys are loaded (their passphrases resolved) and each
backup's certificate is mapped to its public key, so that the planner can match
backups to keys by public-key SHA-256 without any I/O of its own. Nothing is
loaded unless ``rewrapExisting`` is on and some backup is on another
certificate: keys left in the configuration after the rewrap is done are not
needed, and a missing one must not break the plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from reconciler.crypto.keys import PrivateKey, load_private_key
from reconciler.errors import (
    ConfigError,
    CryptoError,
    IntegrityError,
    ObjectNotFoundError,
    PassphraseRequiredError,
)
from reconciler.reconcile.state import ObservedState
from reconciler.repository.records import BackupRecord
from reconciler.repository.store import Repository
from reconciler.spec.model import BackupConfiguration, PreviousKey
from reconciler.spec.secrets import resolve_secret


@dataclass(frozen=True)
class RewrapInputs:
    keys: tuple[PrivateKey, ...] = ()
    """The loaded spec.encryption.previousKeys."""
    certificate_public_keys: dict[str, str] = field(default_factory=dict)
    """Certificate thumbprint -> public-key SHA-256 for the backups' certificates."""


def rewrap_inputs(
    repository: Repository, config: BackupConfiguration, observed: ObservedState
) -> RewrapInputs:
    """Return the previous keys and key fingerprints ``key.rewrap`` planning needs.

    Returns empty inputs when rewrapExisting is off or every backup is on the
    current certificate. Raises ConfigError naming the previousKeys entry when a
    key cannot be loaded, StorageError when a manifest cannot be read."""
    current = config.encryption.certificate.thumbprint
    elsewhere = [b for b in observed.backups if b.key_thumbprint != current]
    if not config.encryption.rewrap_existing or not elsewhere:
        return RewrapInputs()
    keys = tuple(
        _load_previous_key(config, index, item)
        for index, item in enumerate(config.encryption.previous_keys)
    )
    return RewrapInputs(keys, _certificate_public_keys(repository, observed, elsewhere))


def _load_previous_key(config: BackupConfiguration, index: int, item: PreviousKey) -> PrivateKey:
    """Return one previous key; raises ConfigError naming its field."""
    where = f"{config.origin}: spec.encryption.previousKeys[{index}]"
    passphrase = None if item.passphrase is None else resolve_secret(item.passphrase).value
    try:
        return load_private_key(item.key_file, None if passphrase is None else passphrase.encode())
    except PassphraseRequiredError:
        # The key's own message points at --key-passphrase-env, a restore flag.
        raise ConfigError(
            f"{where}.key: the private key file {item.key_file} is encrypted; give its"
            " passphrase as passphrase: {env: NAME} or {file: PATH}"
        ) from None
    except CryptoError as exc:
        raise ConfigError(f"{where}.key: {exc}") from None


def _certificate_public_keys(
    repository: Repository, observed: ObservedState, elsewhere: list[BackupRecord]
) -> dict[str, str]:
    """Map every certificate the backups are on to its public-key SHA-256.

    The key history knows the certificates this repository used; a backup on
    any other (migrated from elsewhere) is looked up in its manifest, once per
    certificate. A certificate whose manifests cannot be read stays unknown."""
    history = observed.settings.key_history if observed.settings else ()
    known = {k.thumbprint: k.public_key_sha256 for k in history}
    for backup in elsewhere:
        if backup.key_thumbprint in known:
            continue
        try:
            wrapped = repository.read_manifest(backup.id).wrapped_key
        except (ObjectNotFoundError, IntegrityError):
            continue
        if wrapped is not None and wrapped.thumbprint == backup.key_thumbprint:
            known[backup.key_thumbprint] = wrapped.public_key_sha256
    return known
