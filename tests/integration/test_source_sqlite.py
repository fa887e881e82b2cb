"""The sqlite source against real databases, with a real concurrent writer process."""

from __future__ import annotations

import io
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reconciler.errors import IntegrityError, SourceError
from reconciler.sources.sqlite import check_database_stream, restore_database, snapshot_database
from reconciler.sources.stats import SourceStats

# Each transaction adds ten rows and records the new total, so a consistent
# snapshot always has count(*) == total and a multiple of ten rows.
WRITER = """
import sqlite3, sys
connection = sqlite3.connect(sys.argv[1], timeout=60, isolation_level=None)
connection.execute("PRAGMA journal_mode=" + sys.argv[2])
first = True
while True:
    connection.execute("BEGIN IMMEDIATE")
    for _ in range(10):
        connection.execute("INSERT INTO item (payload) VALUES (randomblob(300))")
    connection.execute("UPDATE total SET n = n + 10")
    connection.execute("COMMIT")
    if first:
        print("writing", flush=True)
        first = False
"""


def create_database(path: Path, journal_mode: str = "delete", rows: int = 100) -> None:
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute(f"PRAGMA journal_mode={journal_mode}")
    connection.execute("CREATE TABLE item (id INTEGER PRIMARY KEY, payload BLOB)")
    connection.execute("CREATE TABLE total (n INTEGER)")
    connection.execute("BEGIN")
    connection.execute("INSERT INTO total VALUES (?)", (rows,))
    connection.executemany(
        "INSERT INTO item (payload) VALUES (?)", [(bytes([i % 256]) * 300,) for i in range(rows)]
    )
    connection.execute("COMMIT")
    connection.close()


def counts(path: Path) -> tuple[int, int]:
    """(rows in item, recorded total) of the database at ``path``."""
    connection = sqlite3.connect(path)
    try:
        rows = connection.execute("SELECT count(*) FROM item").fetchone()[0]
        total = connection.execute("SELECT n FROM total").fetchone()[0]
        return rows, total
    finally:
        connection.close()


def integrity(path: Path) -> str:
    connection = sqlite3.connect(path)
    try:
        return str(connection.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        connection.close()


def snapshot(db: Path, work_dir: Path) -> bytes:
    out = io.BytesIO()
    snapshot_database(db, out, work_dir)
    return out.getvalue()


@pytest.fixture
def work_dir(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


def test_a_snapshot_restores_to_an_identical_sound_database(tmp_path: Path, work_dir: Path) -> None:
    db = tmp_path / "arm.db"
    create_database(db, rows=500)
    out = io.BytesIO()

    stats = snapshot_database(db, out, work_dir)
    restored = restore_database(io.BytesIO(out.getvalue()), tmp_path / "restored" / "arm.db")

    assert stats == SourceStats(items=1, content_bytes=len(out.getvalue()))
    assert restored == stats
    assert integrity(tmp_path / "restored" / "arm.db") == "ok"
    assert counts(tmp_path / "restored" / "arm.db") == (500, 500)


def test_a_database_path_with_spaces_and_uri_characters_is_read(
    tmp_path: Path, work_dir: Path
) -> None:
    db = tmp_path / "odd name #1?mode=rwc.db"
    create_database(db, rows=3)

    restore_database(io.BytesIO(snapshot(db, work_dir)), tmp_path / "restored.db")

    assert counts(tmp_path / "restored.db") == (3, 3)


@pytest.mark.parametrize("journal_mode", ["wal", "delete"])
def test_snapshots_are_consistent_while_another_process_keeps_writing(
    tmp_path: Path, work_dir: Path, journal_mode: str
) -> None:
    db = tmp_path / "busy.db"
    create_database(db, journal_mode=journal_mode)
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db), journal_mode], stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline() == "writing\n"
        snapshots = []
        for _ in range(3):
            snapshots.append(snapshot(db, work_dir))
            time.sleep(0.05)
        assert writer.poll() is None, "the writer must still be running"
    finally:
        writer.kill()
        writer.communicate()

    seen = []
    for index, data in enumerate(snapshots):
        target = tmp_path / f"restored-{index}.db"
        restore_database(io.BytesIO(data), target)
        assert integrity(target) == "ok"
        rows, total = counts(target)
        assert rows == total
        assert rows % 10 == 0
        seen.append(rows)
    assert seen == sorted(seen)
    assert seen[-1] > 100, "the snapshots should include the writer's rows"
    assert list(work_dir.iterdir()) == []


def test_a_missing_database_is_a_source_error_and_is_not_created(
    tmp_path: Path, work_dir: Path
) -> None:
    missing = tmp_path / "missing.db"

    with pytest.raises(SourceError, match=f"the SQLite database {missing} does not exist"):
        snapshot(missing, work_dir)

    assert not missing.exists()
    assert list(work_dir.iterdir()) == []


def test_a_file_that_is_not_a_database_is_a_source_error(tmp_path: Path, work_dir: Path) -> None:
    not_db = tmp_path / "notes.db"
    not_db.write_bytes(b"these are not the pages you are looking for" * 200)

    with pytest.raises(SourceError, match=f"the SQLite database {not_db} cannot be read"):
        snapshot(not_db, work_dir)

    assert list(work_dir.iterdir()) == []


def damaged_snapshot(tmp_path: Path, work_dir: Path) -> bytes:
    """A snapshot whose b-tree pages were overwritten in the middle."""
    db = tmp_path / "source.db"
    create_database(db, rows=2000)
    data = bytearray(snapshot(db, work_dir))
    for page in range(2, len(data) // 4096, 3):
        data[page * 4096 + 100 : page * 4096 + 400] = b"\xa5" * 300
    return bytes(data)


def test_restoring_damaged_bytes_is_an_integrity_error_and_keeps_the_old_target(
    tmp_path: Path, work_dir: Path
) -> None:
    target = tmp_path / "restored" / "arm.db"
    target.parent.mkdir()
    create_database(target, rows=7)
    damaged = damaged_snapshot(tmp_path, work_dir)

    with pytest.raises(IntegrityError, match=f"the restored database {target}"):
        restore_database(io.BytesIO(damaged), target)

    assert counts(target) == (7, 7)
    assert sorted(path.name for path in target.parent.iterdir()) == ["arm.db"]


@pytest.mark.parametrize("data", [b"", b"SQLite format 2\0" + bytes(4080), b"\x00" * 8192])
def test_restoring_bytes_that_are_not_a_database_is_an_integrity_error(
    tmp_path: Path, data: bytes
) -> None:
    target = tmp_path / "arm.db"

    with pytest.raises(IntegrityError, match=f"the restored database {target} is not an SQLite"):
        restore_database(io.BytesIO(data), target)

    assert list(tmp_path.iterdir()) == []


def test_restore_replaces_the_target_and_drops_its_stale_journal_files(
    tmp_path: Path, work_dir: Path
) -> None:
    source = tmp_path / "source.db"
    create_database(source, rows=30)
    target = tmp_path / "target.db"
    create_database(target, rows=5)
    # Leftovers of the replaced database would be replayed onto the new one.
    (tmp_path / "target.db-wal").write_bytes(b"stale" * 100)
    (tmp_path / "target.db-journal").write_bytes(b"stale" * 100)

    restore_database(io.BytesIO(snapshot(source, work_dir)), target)

    assert counts(target) == (30, 30)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["source.db", "target.db", "work"]


def test_checking_a_stream_accepts_a_sound_snapshot_and_keeps_nothing(
    tmp_path: Path, work_dir: Path
) -> None:
    db = tmp_path / "arm.db"
    create_database(db, journal_mode="wal")
    data = snapshot(db, work_dir)

    assert check_database_stream(io.BytesIO(data), work_dir) == SourceStats(1, len(data))
    assert list(work_dir.iterdir()) == []


def test_checking_a_damaged_stream_is_an_integrity_error(tmp_path: Path, work_dir: Path) -> None:
    damaged = damaged_snapshot(tmp_path, work_dir)

    with pytest.raises(IntegrityError, match="the SQLite database in the backup"):
        check_database_stream(io.BytesIO(damaged), work_dir)

    assert list(work_dir.iterdir()) == []
