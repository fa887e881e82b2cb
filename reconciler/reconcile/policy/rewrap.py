"""Which backups ``key.rewrap`` moves to the current certificate: a pure function.

A backup can be re-wrapped when the public key it is wrapped to belongs to one
of ``spec.encryption.previousKeys``. Keys are matched by the SHA-256 of the
public key, learnt outside the planner: for previous keys by loading them (a
desired fact), for backups from the repository's key history and manifests
(observed: thumbprint -> public key).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from reconciler.crypto.certificates import Certificate
from reconciler.repository.records import BackupRecord, BackupStatus


@dataclass(frozen=True)
class RewrapItem:
    """A backup whose data key ``key.rewrap`` re-wraps."""

    backup: BackupRecord
    from_thumbprint: str


@dataclass(frozen=True)
class StayingItem:
    """A backup on an earlier certificate that stays on it, and why."""

    backup: BackupRecord
    reason: str


def select_rewrap(
    backups: tuple[BackupRecord, ...],
    certificate: Certificate,
    previous_public_keys: frozenset[str],
    certificate_public_keys: Mapping[str, str],
    skip: frozenset[str] = frozenset(),
) -> tuple[tuple[RewrapItem, ...], tuple[StayingItem, ...]]:
    """Return the backups to re-wrap to ``certificate`` and those staying on their keys.

    ``previous_public_keys`` holds the public-key SHA-256 of each loaded previous
    key; ``certificate_public_keys`` maps a certificate thumbprint to its public-key
    SHA-256. Running backups and those in ``skip`` (being repaired in the same
    apply) are left out of both; so are backups on the current certificate, or
    on another certificate of the same public key (a renewal needs no rewrap)."""
    rewrap: list[RewrapItem] = []
    staying: list[StayingItem] = []
    for backup in backups:
        thumbprint = backup.key_thumbprint
        if backup.status is BackupStatus.RUNNING or backup.id in skip:
            continue
        if thumbprint == certificate.thumbprint:
            continue
        spki = certificate_public_keys.get(thumbprint)
        if spki == certificate.public_key_sha256:
            continue
        if spki is not None and spki in previous_public_keys:
            rewrap.append(RewrapItem(backup, thumbprint))
        else:
            staying.append(
                StayingItem(
                    backup,
                    f"no key in spec.encryption.previousKeys belongs to certificate {thumbprint}",
                )
            )
    return tuple(rewrap), tuple(staying)


def staying_warning(staying: tuple[StayingItem, ...]) -> str:
    """Return the plan warning for backups that rewrapExisting cannot move."""
    thumbprints = sorted({s.backup.key_thumbprint for s in staying})
    count = len(staying)
    stay = f"{count} backups stay on their keys" if count != 1 else "1 backup stays on its key"
    return (
        f"{stay} because no key in spec.encryption.previousKeys belongs to certificate"
        f" {', '.join(thumbprints)}; restoring {'them' if count != 1 else 'it'} needs that"
        " private key"
    )
