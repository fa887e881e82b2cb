"""The catalog's head, and plans made from it instead of the whole catalog.

Where ``head_suffices`` says the head is enough, the plan over the newest
backups it carries must be exactly the plan over every backup: that is
checked here over thousands of generated repositories."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.reconcile.plan import plan_configuration
from reconciler.reconcile.policy.head import head_suffices
from reconciler.reconcile.state import Desired
from reconciler.repository.catalog_head import (
    TAIL_LIMIT,
    head_line,
    parse_head_line,
    summarize,
)
from reconciler.repository.records import BackupRecord, BackupStatus
from reconciler.repository.store import Repository
from reconciler.spec.model import Retention, Schedule, VerificationPolicy
from reconciler.storage.memory import MemoryStorage
from tests.plant import plant_catalog
from tests.unit.planning_fixtures import (
    NOW,
    applied,
    backup,
    make_config,
    observed,
)

OTHER = "0" * 40
"""The thumbprint of some earlier certificate."""

STATUSES = st.sampled_from(
    [BackupStatus.SUCCEEDED] * 20
    + [BackupStatus.FAILED, BackupStatus.PARTIALLY_SUCCEEDED] * 2
    + [BackupStatus.CORRUPT]
    + [BackupStatus.RUNNING]
)


@st.composite
def repositories(draw: st.DrawFn) -> tuple[Desired, tuple[BackupRecord, ...]]:
    """A configuration and a history, mostly a healthy one: backups within the
    retention period, verified within the verification period, on the current key."""
    days = draw(st.integers(min_value=1, max_value=60))
    verification = draw(
        st.none() | st.builds(VerificationPolicy, st.integers(min_value=1, max_value=60))
    )
    config = make_config(
        rewrap=draw(st.booleans()),
        schedule=Schedule(
            enabled=draw(st.booleans()),
            frequency_hours=draw(st.integers(min_value=1, max_value=72)),
            retry_after_minutes=draw(st.integers(min_value=1, max_value=600)),
        ),
        retention=Retention(days=days, min_backups=draw(st.integers(min_value=1, max_value=5))),
        verification=verification,
    )
    records = []
    for _ in range(draw(st.integers(min_value=0, max_value=25))):
        age = draw(st.integers(min_value=-6, max_value=days * 24 + 6))
        verified = draw(st.none() | st.integers(min_value=-6, max_value=max(age, 0)))
        record = backup(
            draw(STATUSES),
            age=timedelta(hours=age),
            verified_ago=None if verified is None else timedelta(hours=verified),
        )
        if draw(st.integers(min_value=0, max_value=49)) == 0:
            record = replace(record, key_thumbprint=OTHER)
        records.append(record)
    keys = frozenset({"ab" * 32}) if draw(st.booleans()) else frozenset()
    return Desired(config, previous_public_keys=keys), tuple(records)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    repositories(), st.integers(min_value=0, max_value=19), st.integers(min_value=-30, max_value=30)
)
def test_where_the_head_suffices_its_plan_is_the_whole_catalogs_plan(
    repository: tuple[Desired, tuple[BackupRecord, ...]], rotated: int, shift_hours: int
) -> None:
    desired, records = repository
    config = desired.config
    held = applied(config)
    if rotated == 0:
        held = replace(held, active_key=OTHER)
    now = NOW + timedelta(hours=shift_hours)
    head = summarize(records, ())
    full = observed(held, *records)

    decided = head_suffices(head, config, held, False, now)

    if decided:
        assert head.tail is not None
        from_head = replace(full, backups=head.tail, head=head)
        assert plan_configuration(desired, from_head, now) == plan_configuration(desired, full, now)


def test_the_generated_repositories_are_often_decided_by_their_head() -> None:
    """The property above is not vacuous: its generator makes histories the head
    decides about often enough."""
    seen: list[bool] = []

    @settings(max_examples=300, deadline=None, derandomize=True, database=None)
    @given(repositories(), st.integers(min_value=-30, max_value=30))
    def collect(repository: tuple[Desired, tuple[BackupRecord, ...]], shift_hours: int) -> None:
        desired, records = repository
        now = NOW + timedelta(hours=shift_hours)
        config = desired.config
        seen.append(head_suffices(summarize(records, ()), config, applied(config), False, now))

    collect()
    print(f"decided by the head: {sum(seen)} of {len(seen)}")
    # Which examples Hypothesis draws varies with the test modules collected
    # beside this one (58 to 109 of 300 seen); one in ten keeps it meaningful.
    assert len(seen) == 300 and sum(seen) >= 30


def test_the_generated_repositories_often_let_the_head_decide() -> None:
    """Not a vacuous property: a typical healthy history is decided by its head."""
    config = make_config(verification=VerificationPolicy(30))
    records = tuple(
        backup(age=timedelta(hours=12 * n), verified_ago=timedelta(days=1)) for n in range(10)
    )
    head = summarize(records, ())
    assert head_suffices(head, config, applied(config), False, NOW)
    # ... and each reason to read the whole catalog is seen
    assert not head_suffices(head, config, applied(config), True, NOW)  # migrating
    assert not head_suffices(head, config, applied(config), False, NOW + timedelta(days=8))
    assert not head_suffices(head, config, applied(config), False, NOW - timedelta(hours=1))
    assert not head_suffices(
        summarize(
            (*records, replace(records[0], id=records[0].id + "x", key_thumbprint=OTHER)), ()
        ),
        config,
        applied(config),
        False,
        NOW,
    )


def test_the_head_carries_the_newest_backups_from_the_newest_success_on() -> None:
    old = backup(age=timedelta(hours=30))
    success = backup(age=timedelta(hours=20))
    failures = tuple(backup(BackupStatus.FAILED, age=timedelta(hours=h)) for h in (10, 5))
    head = summarize((old, success, *failures), ())
    assert head.tail == (success, *failures)
    assert head.count == 4 and head.oldest_created_at == old.created_at
    assert head.newest_created_at == failures[-1].created_at

    many = tuple(
        backup(BackupStatus.FAILED, age=timedelta(minutes=m)) for m in range(TAIL_LIMIT + 1)
    )
    assert summarize((success, *many), ()).tail is None  # too many: plans read the catalog


def test_a_head_line_round_trips_and_a_damaged_one_is_refused() -> None:
    records = (backup(age=timedelta(hours=3)), backup(BackupStatus.RUNNING, age=timedelta(hours=1)))
    head = summarize(records, ("20260101T000000Z-000001",))
    line = head_line(head)
    assert line.endswith(b",\n") and line.count(b"\n") == 1
    assert parse_head_line(line.rstrip(b"\n"), "catalog.json") == head
    assert parse_head_line(b'{"backups": []}', "catalog.json") is None  # written before heads


def test_a_catalog_with_its_head_is_still_one_json_object_and_the_head_is_read_alone() -> None:
    storage = MemoryStorage()
    repository = Repository(storage, "region-west")
    records = tuple(backup(age=timedelta(hours=h)) for h in range(200, 0, -1))
    plant_catalog(repository, records)
    raw = storage.objects["catalog.json"]

    data = json.loads(raw)
    assert set(data) == {"head", "backups"} and len(data["backups"]) == 200
    assert [b.id for b in repository.read_catalog().backups] == [b.id for b in records]
    before = storage.bytes_read
    head = repository.read_catalog_head()
    assert head is not None and head.count == 200
    assert storage.bytes_read - before < len(raw)


def test_a_catalog_without_a_head_is_read_whole() -> None:
    storage = MemoryStorage()
    repository = Repository(storage, "region-west")
    storage.objects["catalog.json"] = json.dumps({"backups": []}).encode()
    assert repository.read_catalog_head() is None
    storage.objects["catalog.json"] = b'{"head": {"count": 1,'
    assert repository.read_catalog_head() is None  # damaged: the full read reports it
