"""Planning the deduplicating format: repository.upgrade, chunks.reclaim and the index key check."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from jsonschema import Draft202012Validator

from reconciler.errors import ConfigError
from reconciler.reconcile.actions import (
    INDEX_KEY_KEPT_NOTE,
    PruneBackups,
    ReclaimChunks,
    ReclaimEstimate,
    RunBackup,
    UpgradeRepository,
)
from reconciler.reconcile.plan import plan_configuration
from reconciler.reconcile.render import render_json, render_text
from reconciler.reconcile.state import Desired
from reconciler.repository.survey import CleanupItem
from tests.unit.planning_fixtures import NOW, PLAN_SCHEMA, applied, backup, make_config, observed

CHECK = "0123456789abcdef0123456789abcdef"
OTHER = "fedcba9876543210fedcba9876543210"


def _names(plan: object) -> list[str]:
    return [a.name for a in plan.actions]  # type: ignore[attr-defined]


def test_a_format_1_repository_is_upgraded_before_the_next_backup() -> None:
    config = make_config()
    state = observed(applied(config), backup(age=timedelta(days=1)), format_version=1)
    plan = plan_configuration(Desired(config), state, NOW)
    assert _names(plan) == ["repository.upgrade", "backup.run"]
    upgrade = plan.action(UpgradeRepository)
    assert isinstance(upgrade, UpgradeRepository)
    assert upgrade.whole_backups == 1
    # Without a configured index key the plan says what keeping it in the storage costs.
    assert INDEX_KEY_KEPT_NOTE in render_text([plan])


def test_an_upgrade_with_a_configured_key_does_not_warn() -> None:
    config = make_config()
    state = observed(applied(config), format_version=1)
    plan = plan_configuration(Desired(config, index_key_check=CHECK), state, NOW)
    assert plan.action(UpgradeRepository) is not None
    assert INDEX_KEY_KEPT_NOTE not in render_text([plan])


def test_a_format_2_repository_is_not_upgraded_again() -> None:
    config = make_config()
    state = observed(
        applied(config), format_version=2, index_key_check=CHECK, index_key_stored=True
    )
    plan = plan_configuration(Desired(config), state, NOW)
    assert _names(plan) == ["backup.run"]


def test_a_configured_index_key_that_is_not_the_repositorys_is_refused() -> None:
    config = make_config()
    state = observed(applied(config), format_version=2, index_key_check=CHECK)
    with pytest.raises(ConfigError, match=r"spec\.encryption\.indexKey of region-west is not the"):
        plan_configuration(Desired(config, index_key_check=OTHER), state, NOW)
    # The right key plans normally.
    plan = plan_configuration(Desired(config, index_key_check=CHECK), state, NOW)
    assert plan.action(RunBackup) is not None


def test_no_configured_key_is_refused_when_the_repository_keeps_none() -> None:
    config = make_config()
    state = observed(applied(config), format_version=2, index_key_check=CHECK)
    with pytest.raises(ConfigError, match="keeps no index key of its own"):
        plan_configuration(Desired(config), state, NOW)


def test_a_prune_in_format_2_is_followed_by_reclaiming() -> None:
    config = make_config()
    backups = [backup(age=timedelta(days=d)) for d in (30, 20, 1, 0.2)]
    state = observed(
        applied(config), *backups, format_version=2, index_key_check=CHECK, index_key_stored=True
    )
    plan = plan_configuration(Desired(config), state, NOW)
    names = _names(plan)
    assert names.index("chunks.reclaim") == names.index("backup.prune") + 1
    assert isinstance(plan.action(PruneBackups), PruneBackups)


def test_a_prune_in_format_1_reclaims_nothing() -> None:
    config = make_config()
    backups = [backup(age=timedelta(days=d)) for d in (30, 20, 1, 0.2)]
    plan = plan_configuration(Desired(config), observed(applied(config), *backups), NOW)
    assert "backup.prune" in _names(plan) and "chunks.reclaim" not in _names(plan)


def test_an_interrupted_backup_is_reclaimed_after_cleanup() -> None:
    config = make_config()
    leftover = CleanupItem(
        "backups/20261125T110000Z-abcdef", "an interrupted backup", "20261125T110000Z-abcdef"
    )
    state = observed(
        applied(config),
        backup(age=timedelta(hours=1)),
        format_version=2,
        index_key_check=CHECK,
        index_key_stored=True,
        cleanup=(leftover,),
    )
    assert _names(plan_configuration(Desired(config), state, NOW)) == [
        "staging.cleanup",
        "chunks.reclaim",
    ]


def test_reclaim_shows_the_bytes_it_frees_in_text_and_json() -> None:
    config = make_config()
    state = observed(
        applied(config), format_version=2, index_key_check=CHECK, index_key_stored=True
    )
    plan = plan_configuration(Desired(config), state, NOW)
    action = ReclaimChunks("backups are deleted", ReclaimEstimate(73400320, 2, 1))
    plan = plan.__class__(plan.name, plan.location, plan.now, (action,))
    assert "frees 73400320 bytes: deletes 2 packs and rewrites 1" in render_text([plan])
    document = json.loads(render_json([plan], NOW))
    Draft202012Validator(PLAN_SCHEMA).validate(document)
    (entry,) = document["configurations"][0]["actions"]
    assert entry["freesBytes"] == 73400320 and entry["packsDeleted"] == 2
