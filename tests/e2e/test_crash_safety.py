"""kill -9 at every interesting point of an apply, then check nothing is lost or lies.

Each test starts from the same seeded repository (two Succeeded backups), runs
``backupctl apply`` in a subprocess, stops it at an exact point (a failpoint,
``BACKUPCTL_FAILPOINTS=NAME:sleep``, or a dump command waiting mid-read),
kills it with SIGKILL, and checks, reading the repository's files directly:

* right after the kill, no backup is listed Succeeded unless it is committed
  and every object decrypts and matches its manifest, and no earlier backup
  is lost;
* the next plain ``apply`` cleans up (``staging.cleanup``), succeeds, and
  leaves a repository whose catalog agrees exactly with its manifests, with
  no leftovers; a backup whose manifest was written before the kill is kept,
  not made again.

The repository is format 2 (chunks in packs, found through the index): every
backup adds a file of new random content, so each run writes a pack and a
prune leaves chunks for ``chunks.reclaim`` to delete. A kill during a backup
or a reclaim must never lose a chunk a kept backup references, and the next
apply must finish the reclaim: every pack indexed, every index entry's pack
present, no folded-in index run left.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import assert_one_clear_error
from tests.e2e.region import Region, wait_for_file
from tests.e2e.repository_state import (
    RepositoryState,
    assert_chunks_settled,
    assert_nothing_false_is_listed,
    assert_settled,
    read_state,
)

T1 = "2026-11-01T00:00:00Z"
T2 = "2026-11-01T13:00:00Z"
NEXT_DAY = "2026-11-02T06:00:00Z"
"""A backup is due (the newest is 17 hours old); nothing is old enough to prune."""
WEEK_LATER = "2026-11-09T00:00:00Z"
"""A backup is due, and the T1 backup (8 days old) is pruned; T2's is kept by minBackups."""
TWO_WEEKS_LATER = "2026-11-16T00:00:00Z"
"""A backup is due, and the T2 and WEEK_LATER backups are pruned."""
CHANGING_SIZE = 600_000
"""New content each backup: more than the large-file size, so whole chunks of its own."""


def change_data(region: Region, tag: str) -> bytes:
    """Give the next backup content no other has (kept under ``versions/`` to be
    put back later); return it."""
    content = os.urandom(CHANGING_SIZE)
    (region.root / "examples" / "stamp" / "deployment" / "changing.bin").write_bytes(content)
    versions = region.root / "versions"
    versions.mkdir(exist_ok=True)
    (versions / tag).write_bytes(content)
    return content


def put_back(region: Region, tag: str) -> None:
    """Make the deployment tree hold the content of an earlier backup again."""
    content = (region.root / "versions" / tag).read_bytes()
    (region.root / "examples" / "stamp" / "deployment" / "changing.bin").write_bytes(content)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Region:
    """Made once per module: two Succeeded backups, at T1 and T2."""
    region = Region.create(tmp_path_factory.mktemp("seeded") / "ws")
    for now in (T1, T2):
        change_data(region, now)
        result = region.apply(now)
        assert result.code == 0, result.text
    assert len(read_state(region.repository).succeeded) == 2
    return region


@pytest.fixture
def region(seeded: Region, tmp_path: Path) -> Iterator[Region]:
    root = tmp_path / "ws"
    shutil.copytree(seeded.root, root, symlinks=True)
    yield Region(root)


def kill_at(region: Region, point: str, now: str) -> None:
    """Run apply until it reaches failpoint ``point``, then kill -9 it."""
    process = region.start_apply(now, {"BACKUPCTL_FAILPOINTS": f"{point}:sleep"})
    name = point.split("#")[0]
    process.wait_for(f"failpoint {name} reached")
    process.kill9()


def check_after_kill(region: Region, kept: set[str], ask_cli: bool = False) -> RepositoryState:
    """Nothing false is listed in the catalog (and, with ``ask_cli``, by `backups
    list`, which reads that catalog: checked in some tests only, for speed);
    ``kept`` are all still there."""
    state = assert_nothing_false_is_listed(region.repository, region.key)
    if ask_cli:
        listed = region.listed()
        assert {i for i, s in listed.items() if s == "Succeeded"} <= state.succeeded
    lost = kept - state.succeeded
    assert not lost, f"earlier backups lost: {lost}"
    return state


def recover(region: Region, now: str) -> RepositoryState:
    """The next plain apply cleans up and succeeds, leaving nothing to do."""
    result = region.apply(now)
    assert result.code == 0, result.text
    assert "staging.cleanup: done" in result.out, result.out
    return assert_settled(region.repository, region.key)


def new_backups(before: RepositoryState, after: RepositoryState) -> list[str]:
    return sorted(set(after.manifests) - set(before.manifests))


@pytest.mark.parametrize(
    "point",
    [
        "backup-started",  # the catalog lists a Running backup; nothing else written
        "pack-written",  # a pack of new chunks stored, nothing indexes it yet
        "object-upload",  # a chunk list fully written under a temporary name, not committed
        "before-manifest",  # every object committed, no manifest: the backup does not exist
        "after-manifest",  # committed, but the catalog still says Running
        "catalog-write#2",  # killed while writing the catalog that records the new backup
    ],
)
def test_a_backup_killed_at_any_point_is_never_listed_falsely_and_the_next_apply_recovers(
    region: Region, point: str
) -> None:
    before = read_state(region.repository)
    change_data(region, NEXT_DAY)
    kill_at(region, point, NEXT_DAY)
    committed = new_backups(before, check_after_kill(region, before.succeeded))
    settled = recover(region, NEXT_DAY)
    assert before.succeeded <= settled.succeeded
    [made] = new_backups(before, settled)
    assert settled.catalog[made] == "Succeeded"
    assert made.startswith("20261102T060000Z-")
    if committed:  # the manifest was written before the kill: that backup is kept, not redone
        assert committed == [made]


def test_a_backup_killed_while_a_source_is_being_read_is_cleaned_up(region: Region) -> None:
    before = read_state(region.repository)
    marker, go = region.root / "reading", region.root / "go"
    process = region.start_apply(
        NEXT_DAY, {"SLOW_DUMP_MARKER": str(marker), "SLOW_DUMP_GO": str(go)}
    )
    wait_for_file(marker, process)
    process.kill9()
    go.touch()  # let the orphaned dump command end
    state = check_after_kill(region, before.succeeded, ask_cli=True)
    assert "Running" in state.catalog.values()
    settled = recover(region, NEXT_DAY)
    assert len(new_backups(before, settled)) == 1


@pytest.mark.parametrize(
    "point",
    [
        "prune-started",  # the doomed backup is out of the catalog, remembered as pending
        "prune-deleting",  # its manifest is deleted, its objects are not yet
        "catalog-write#4",  # killed writing the catalog that ends the prune
    ],
)
def test_a_prune_killed_at_any_point_is_finished_by_the_next_apply(
    region: Region, point: str
) -> None:
    before = read_state(region.repository)
    oldest, newest = sorted(before.succeeded)
    kill_at(region, point, WEEK_LATER)
    state = check_after_kill(region, before.succeeded - {oldest})
    assert newest in state.succeeded
    settled = recover(region, WEEK_LATER)
    assert oldest not in settled.folders
    assert newest in settled.succeeded
    assert len(new_backups(before, settled)) == 1


def test_a_cleanup_killed_half_way_is_done_again(region: Region) -> None:
    before = read_state(region.repository)
    kill_at(region, "object-upload", NEXT_DAY)
    kill_at(region, "cleanup", NEXT_DAY)
    check_after_kill(region, before.succeeded)
    settled = recover(region, NEXT_DAY)
    assert len(new_backups(before, settled)) == 1


def test_storage_replaced_by_a_file_mid_backup_fails_clearly_and_the_next_apply_recovers(
    region: Region,
) -> None:
    before = read_state(region.repository)
    marker, go = region.root / "reading", region.root / "go"
    process = region.start_apply(
        NEXT_DAY, {"SLOW_DUMP_MARKER": str(marker), "SLOW_DUMP_GO": str(go)}
    )
    wait_for_file(marker, process)
    location = region.root / ".backups"
    location.rename(region.root / ".backups-away")
    location.write_text("the share went away\n")
    go.touch()
    result = process.finish()
    assert_one_clear_error(result, "quickstart", str(location))
    location.unlink()
    (region.root / ".backups-away").rename(location)
    check_after_kill(region, before.succeeded, ask_cli=True)
    settled = recover(region, NEXT_DAY)
    assert len(new_backups(before, settled)) == 1


def test_storage_failing_during_a_prune_fails_clearly_and_the_next_apply_finishes_it(
    region: Region,
) -> None:
    before = read_state(region.repository)
    oldest, _ = sorted(before.succeeded)
    result = region.run(
        "apply",
        "-f",
        region.config,
        "--now",
        WEEK_LATER,
        env={"BACKUPCTL_FAILPOINTS": "prune-started:error"},
    )
    assert_one_clear_error(result, "backup.prune", "the storage became unreachable")
    check_after_kill(region, before.succeeded - {oldest})
    settled = recover(region, WEEK_LATER)
    assert oldest not in settled.folders


@pytest.mark.parametrize(
    "point",
    [
        "prune-deleting",  # the pruned backup's manifest is gone, its chunk lists not yet
        "reclaim-shards-written",  # new index shards written, the pointer not yet switched
        "reclaim-pointer-written",  # the pointer switched, folded-in deltas not yet deleted
        "reclaim-index-switched",  # the index no longer names the doomed packs, still there
    ],
)
def test_a_reclaim_killed_at_any_point_loses_no_kept_chunk_and_the_next_apply_finishes_it(
    region: Region, point: str
) -> None:
    before = read_state(region.repository)
    oldest, newest = sorted(before.succeeded)
    change_data(region, WEEK_LATER)
    kill_at(region, point, WEEK_LATER)
    check_after_kill(region, before.succeeded - {oldest})

    result = region.apply(WEEK_LATER)
    assert result.code == 0, result.text
    assert "chunks.reclaim: done" in result.out, result.out
    settled = assert_settled(region.repository, region.key)
    assert oldest not in settled.folders and newest in settled.succeeded
    assert_chunks_settled(region.repository, region.key)
    quiet = region.run("plan", "-f", region.config, "--now", WEEK_LATER, "--detailed-exitcode")
    assert quiet.code == 0, quiet.text

    # The pruned backup's content comes back: it is stored again, not found in
    # an index entry whose pack is gone; and a further prune keeps what is kept.
    put_back(region, T1)
    assert region.apply(TWO_WEEKS_LATER).code == 0
    again = assert_settled(region.repository, region.key)
    assert len(again.succeeded) == 2, again.catalog
    assert_chunks_settled(region.repository, region.key)
