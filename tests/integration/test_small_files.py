"""The worker processes that create the small files of a restore."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from reconciler.errors import RestoreError
from reconciler.sources import small_files
from reconciler.sources.small_files import BATCH_FILES, FileEnd, SmallFileWriters

MTIME_NS = 1_700_000_000_123_456_789


def end(mode: int = 0o640) -> FileEnd:
    return FileEnd(mode=mode, plain=True, owner=None, mtime_ns=MTIME_NS)


def submit_files(writers: SmallFileWriters, folder: Path, count: int) -> dict[Path, bytes]:
    written = {}
    for index in range(count):
        path = folder / f"{index:05d}.json"
        data = f'{{"index": {index}}}\n'.encode() * (index % 7 + 1)
        writers.submit(os.fsencode(path), memoryview(data), end())
        written[path] = data
    return written


def test_many_small_files_are_created_by_workers_with_data_mode_and_mtime(tmp_path: Path) -> None:
    writers = SmallFileWriters(workers=2)
    written = submit_files(writers, tmp_path, 5 * BATCH_FILES + 3)
    assert len(writers._workers) == 2  # the batches went to worker processes
    pids = [worker.process.pid for worker in writers._workers]

    writers.close()

    for path, data in written.items():
        assert path.read_bytes() == data
        assert os.stat(path).st_mtime_ns == MTIME_NS
        assert os.stat(path).st_mode & 0o7777 == 0o640
    for pid in pids:  # waited for: no process is left behind
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def test_a_few_files_are_written_without_starting_a_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(small_files, "WORKER", tmp_path / "no-such-worker.py")
    writers = SmallFileWriters(workers=2)
    written = submit_files(writers, tmp_path, 3)

    writers.close()

    assert {path: path.read_bytes() for path in written} == written


def test_a_file_a_worker_cannot_create_is_named_in_the_error(tmp_path: Path) -> None:
    writers = SmallFileWriters(workers=2)
    submit_files(writers, tmp_path, 2 * BATCH_FILES)
    too_long = tmp_path / ("x" * 300)
    writers.submit(os.fsencode(too_long), memoryview(b"data"), end())
    (tmp_path / "later").mkdir()
    submit_files(writers, tmp_path / "later", 2 * BATCH_FILES)

    with pytest.raises(RestoreError) as raised:
        writers.close()

    assert str(raised.value) == f"the file {too_long} cannot be created (file name too long)"
    writers.close(report=False)


def test_an_existing_file_is_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / "00070.json").write_bytes(b"keep me")
    writers = SmallFileWriters(workers=2)

    with pytest.raises(RestoreError, match=f"already holds {tmp_path / '00070.json'}$"):
        submit_files(writers, tmp_path, 3 * BATCH_FILES)
        writers.close()

    writers.close(report=False)
    assert (tmp_path / "00070.json").read_bytes() == b"keep me"


def test_a_worker_that_dies_fails_the_restore(tmp_path: Path) -> None:
    writers = SmallFileWriters(workers=1)
    submit_files(writers, tmp_path, BATCH_FILES)
    os.kill(writers._workers[0].process.pid, signal.SIGKILL)
    writers._workers[0].process.wait()

    with pytest.raises(RestoreError, match="stopped unexpectedly"):
        submit_files(writers, tmp_path / "more", 4 * BATCH_FILES)
        writers.close()
    writers.close(report=False)


def test_a_missing_worker_program_fails_the_restore_instead_of_losing_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(small_files, "WORKER", tmp_path / "no-such-worker.py")
    writers = SmallFileWriters(workers=1)

    with pytest.raises(RestoreError, match=r"stopped unexpectedly \(exit status 2\)"):
        submit_files(writers, tmp_path, 3 * BATCH_FILES)
        writers.close()
    writers.close(report=False)


def test_an_abandoned_restore_stops_the_workers_and_raises_nothing(tmp_path: Path) -> None:
    writers = SmallFileWriters(workers=2)
    submit_files(writers, tmp_path / "missing-folder", 2 * BATCH_FILES)
    processes = [worker.process for worker in writers._workers]

    writers.close(report=False)  # the failure is ignored: the restore failed elsewhere

    assert all(process.returncode is not None for process in processes)
