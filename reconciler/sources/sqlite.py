"""The ``sqlite`` source: a consistent online snapshot of a database file.

``snapshot_database`` copies the database with SQLite's online backup API in a
single step: the copy is one read transaction, so it is consistent even while
other processes write (in WAL mode they are not even blocked; in
rollback-journal mode their commits wait until the copy is done). The copy goes
to a temporary file first because the backup API writes to a database, not to
a stream; that file is then streamed and deleted.

The source is opened read-only, so a missing path is an error instead of a new
empty database. For a WAL database SQLite may still create the ``-wal`` and
``-shm`` files beside it, as any reader would.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
from pathlib import Path

from reconciler.errors import IntegrityError, RestoreError, SourceError
from reconciler.sources.stats import SourceStats
from reconciler.streams import CHUNK_SIZE, ByteSink, ByteSource

_MAGIC = b"SQLite format 3\0"
_BUSY_TIMEOUT_SECONDS = 60.0
_SIDE_FILES = ("-wal", "-shm", "-journal")


def snapshot_database(db_path: Path, out: ByteSink, work_dir: Path) -> SourceStats:
    """Write a consistent snapshot of the SQLite database ``db_path`` to ``out``.

    The snapshot is staged in a temporary file inside ``work_dir`` (a private
    folder the caller provides) and deleted afterwards. Returns one item and
    the snapshot's size. Raises ``SourceError`` naming ``db_path`` when it is
    missing, unreadable or not an SQLite database, or when ``work_dir`` cannot
    hold the snapshot."""
    try:
        fd, staged_name = tempfile.mkstemp(prefix="snapshot-", suffix=".sqlite", dir=work_dir)
    except OSError as exc:
        raise SourceError(
            f"the work folder {work_dir} cannot hold the snapshot of {db_path} ({exc.strerror})"
        ) from exc
    os.close(fd)
    staged = Path(staged_name)
    try:
        _backup_to(db_path, staged)
        size = _copy_file_to(staged, out)
    finally:
        _remove_with_side_files(staged)
    return SourceStats(items=1, content_bytes=size)


def restore_database(stream: ByteSource, target_file: Path) -> SourceStats:
    """Restore a snapshot from ``stream`` to ``target_file``.

    The data goes to a temporary file beside the target, must pass
    ``PRAGMA integrity_check``, and only then is renamed over the target, so the
    target is either the old file or the complete new one. Stale ``-wal``,
    ``-shm`` and ``-journal`` files of the target are removed first: SQLite
    would otherwise apply them to the restored database and damage it.

    Returns one item and the bytes written. Raises ``IntegrityError`` naming
    the target when the data is not a sound database, and ``RestoreError``
    when the target's folder cannot be written."""
    folder = target_file.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, staged_name = tempfile.mkstemp(
            prefix=f".{target_file.name}.", suffix=".restore", dir=folder
        )
    except OSError as exc:
        raise RestoreError(
            f"the folder {folder} cannot receive the restored database ({exc.strerror})"
        ) from exc
    staged = Path(staged_name)
    try:
        size = _write_stream(stream, fd, target_file)
        _check_integrity(staged, f"the restored database {target_file}")
        try:
            for suffix in _SIDE_FILES:
                Path(f"{target_file}{suffix}").unlink(missing_ok=True)
            os.replace(staged, target_file)
        except OSError as exc:
            raise RestoreError(
                f"the restored database cannot be moved to {target_file} ({exc.strerror})"
            ) from exc
    finally:
        _remove_with_side_files(staged)
    return SourceStats(items=1, content_bytes=size)


def prepare_database_file(database: Path, replaces: Path | None) -> None:
    """Make a restored database ready to be moved over ``replaces`` (None when
    it goes to a new place): give it the mode of the file it replaces (else the
    umask's default), and remove the replaced database's journal files: SQLite
    would replay a stale -wal onto the restored file and damage it.

    Raises OSError."""
    if replaces is not None and replaces.exists():
        os.chmod(database, replaces.stat().st_mode & 0o7777)
    else:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(database, 0o666 & ~umask)
    if replaces is not None:
        for suffix in _SIDE_FILES:
            Path(f"{replaces}{suffix}").unlink(missing_ok=True)


def check_database_stream(stream: ByteSource, work_dir: Path) -> SourceStats:
    """Check that ``stream`` holds a sound SQLite database, keeping nothing.

    The data is staged in ``work_dir`` and deleted afterwards. Returns one item
    and the size. Raises ``IntegrityError`` when it fails the integrity check and
    ``RestoreError`` when ``work_dir`` cannot hold it."""
    try:
        fd, staged_name = tempfile.mkstemp(prefix="check-", suffix=".sqlite", dir=work_dir)
    except OSError as exc:
        raise RestoreError(
            f"the work folder {work_dir} cannot hold the database to check ({exc.strerror})"
        ) from exc
    staged = Path(staged_name)
    try:
        size = _write_stream(stream, fd, staged)
        _check_integrity(staged, "the SQLite database in the backup")
    finally:
        _remove_with_side_files(staged)
    return SourceStats(items=1, content_bytes=size)


def _backup_to(db_path: Path, staged: Path) -> None:
    """Copy ``db_path`` into the empty database file ``staged``.

    Raises ``SourceError`` naming ``db_path``."""
    uri = f"{db_path.absolute().as_uri()}?mode=ro"
    try:
        source = sqlite3.connect(uri, uri=True, timeout=_BUSY_TIMEOUT_SECONDS)
    except sqlite3.Error as exc:
        raise SourceError(_cannot_read(db_path, exc)) from exc
    try:
        destination = sqlite3.connect(staged)
        try:
            # pages=-1: the whole database in one step, hence one read
            # transaction and a consistent copy. Copying in several steps would
            # restart whenever another connection writes, possibly forever.
            source.backup(destination, pages=-1)
        finally:
            destination.close()
    except sqlite3.Error as exc:
        raise SourceError(_cannot_read(db_path, exc)) from exc
    finally:
        source.close()


def _cannot_read(db_path: Path, exc: sqlite3.Error) -> str:
    if not db_path.exists():
        return f"the SQLite database {db_path} does not exist"
    return f"the SQLite database {db_path} cannot be read ({exc})"


def _copy_file_to(path: Path, out: ByteSink) -> int:
    """Stream the file at ``path`` to ``out`` in chunks; returns its size."""
    size = 0
    with path.open("rb") as file:
        while chunk := file.read(CHUNK_SIZE):
            out.write(chunk)
            size += len(chunk)
    return size


def _write_stream(stream: ByteSource, fd: int, name: Path) -> int:
    """Copy ``stream`` into the open file ``fd`` (closing it); returns the size.

    Raises ``RestoreError`` naming ``name`` when the file cannot be written."""
    size = 0
    try:
        with os.fdopen(fd, "wb") as file:
            while chunk := stream.read(CHUNK_SIZE):
                file.write(chunk)
                size += len(chunk)
            file.flush()
            os.fsync(file.fileno())
    except OSError as exc:
        raise RestoreError(f"the database {name} cannot be written ({exc.strerror})") from exc
    return size


def _check_integrity(path: Path, label: str) -> None:
    """Run ``PRAGMA integrity_check`` on ``path``; raises ``IntegrityError`` using ``label``."""
    with path.open("rb") as file:
        header = file.read(len(_MAGIC))
    # SQLite takes an empty file for an empty database; a snapshot never is.
    if header != _MAGIC:
        raise IntegrityError(f"{label} is not an SQLite database")
    # immutable=1: read the file as it is, without locks or -wal/-shm files.
    uri = f"{path.absolute().as_uri()}?mode=ro&immutable=1"
    try:
        connection = sqlite3.connect(uri, uri=True)
        try:
            rows = connection.execute("PRAGMA integrity_check").fetchall()
        finally:
            connection.close()
    except sqlite3.Error as exc:
        raise IntegrityError(f"{label} is damaged ({exc})") from exc
    if [str(row[0]) for row in rows] != ["ok"]:
        raise IntegrityError(f"{label} fails its integrity check ({_summary(rows)})")


def _summary(rows: list[tuple[object, ...]]) -> str:
    """The first problems ``integrity_check`` reported, on one line."""
    problems = [
        line.strip()
        for row in rows
        for line in str(row[0]).splitlines()
        if line.strip() and not line.startswith("***")
    ]
    shown = "; ".join(problems[:2])
    more = len(problems) - 2
    return f"{shown} and {more} more problems" if more > 0 else shown


def _remove_with_side_files(path: Path) -> None:
    """Delete a staged database and any journal SQLite left beside it."""
    for suffix in ("", *_SIDE_FILES):
        with contextlib.suppress(FileNotFoundError):
            Path(f"{path}{suffix}").unlink()
