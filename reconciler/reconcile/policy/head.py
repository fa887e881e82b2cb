"""When a plan may be made from the catalog's head instead of the whole catalog.

The head (repository.catalog_head) carries the newest backups in full and a
few facts about all of them. Where those facts show that no backup can be
pruned, verified, re-wrapped or migrated at ``now``, the planner's answer is
the same over the newest backups as over all of them: the schedule only ever
looks at the newest backup and the newest Succeeded one. A test compares the
two plans over many generated repositories.
"""

from __future__ import annotations

from datetime import datetime

from reconciler.reconcile.policy.retention import past_retention
from reconciler.reconcile.policy.verification import verification_due
from reconciler.repository.catalog_head import CatalogHead
from reconciler.repository.records import AppliedSettings
from reconciler.spec.model import BackupConfiguration


def head_suffices(
    head: CatalogHead,
    config: BackupConfiguration,
    settings: AppliedSettings | None,
    migrating: bool,
    now: datetime,
) -> bool:
    """True when planning over ``head.tail`` gives the plan the whole catalog would."""
    if migrating or settings is None or head.tail is None:
        return False
    if head.running or head.pending_deletes:
        return False  # cleanup to plan, and the schedule skips Running backups
    certificate = config.encryption.certificate.thumbprint
    if settings.active_key != certificate:
        return False  # key.rotate counts the backups on the old key
    if any(thumbprint != certificate for thumbprint in head.key_thumbprints):
        return False  # some backup may need key.rewrap, or a warning that it cannot
    if head.newest_created_at is not None and now < head.newest_created_at:
        return False  # backups dated after now: the schedule looks at older ones
    if head.oldest_created_at is not None and past_retention(
        head.oldest_created_at, config.retention, now
    ):
        return False  # some backup may be old enough to prune
    verification = config.verification
    # verify_since is the earliest any backup's verification counts from.
    return (
        verification is None
        or head.verify_since is None
        or not verification_due(head.verify_since, verification, now)
    )
