"""The command source against real subprocesses."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest

from reconciler.errors import IntegrityError, SourceError
from reconciler.sources.command import run_backup_command, run_restore_command
from reconciler.sources.stats import SourceStats

PAYLOAD_SIZE = 5 * 1024 * 1024 + 17


def living_members_of_group(pgid: int) -> list[int]:
    """Processes in the group ``pgid`` still alive after a grace period.

    SIGKILL is delivered asynchronously, so a killed process may need a moment
    (long on a busy machine) to finish exiting; a zombie has ended and only
    waits to be reaped. Returns as soon as none is left; the members of a group
    that was never killed sleep 60 s, far beyond the grace period."""
    deadline = time.monotonic() + 30
    while True:
        living = [pid for pid, state in group_members(pgid) if state != "Z"]
        if not living or time.monotonic() > deadline:
            return living
        time.sleep(0.02)


def group_members(pgid: int) -> list[tuple[int, str]]:
    """``(pid, state)`` of every process in the group ``pgid``."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat_file:
                fields = stat_file.read().rpartition(")")[2].split()
        except OSError:
            continue  # ended while we looked
        if int(fields[2]) == pgid:
            members.append((int(entry), fields[0]))
    return members


def read_pid(path: Path) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return int(path.read_text())
        time.sleep(0.02)
    raise AssertionError(f"{path} was never written")


class FailingSink:
    """A sink that fails like a storage that went away after some data."""

    def __init__(self) -> None:
        self.received = 0

    def write(self, data: bytes) -> int:
        self.received += len(data)
        if self.received > 100_000:
            raise IntegrityError("the storage went away")
        return len(data)


class FailingStream:
    """A stream that yields some data, then fails like a damaged backup."""

    def __init__(self) -> None:
        self.sent = 0

    def read(self, size: int) -> bytes:
        if self.sent > 200_000:
            raise IntegrityError("the backup is damaged")
        self.sent += 65536
        return b"x" * 65536


# A command killed at its timeout of a second or less must end long before it
# would by itself (60 s), but a busy machine may take a few seconds to notice the
# timeout, kill the process group and reap it.
KILLED_SOON = 15.0

# -- backup ----------------------------------------------------------------


def test_the_backup_command_stdout_is_captured_exactly(tmp_path: Path) -> None:
    payload = os.urandom(PAYLOAD_SIZE)
    (tmp_path / "export.bin").write_bytes(payload)
    out = io.BytesIO()

    stats = run_backup_command(("cat", "export.bin"), 30, out, tmp_path)

    assert out.getvalue() == payload
    assert stats == SourceStats(items=1, content_bytes=PAYLOAD_SIZE)


def test_the_backup_command_gets_the_given_environment_and_folder(tmp_path: Path) -> None:
    out = io.BytesIO()
    env = {"PATH": os.environ["PATH"], "VAULT_REGION": "west"}

    run_backup_command(
        ("sh", "-c", 'printf "%s %s" "$VAULT_REGION" "$PWD"'), 30, out, tmp_path, env
    )

    assert out.getvalue().decode() == f"west {tmp_path}"


def test_a_non_zero_exit_is_a_source_error_with_the_last_stderr_line(tmp_path: Path) -> None:
    script = "echo partial; echo connecting >&2; echo vault is sealed >&2; echo >&2; exit 3"

    with pytest.raises(SourceError) as caught:
        run_backup_command(("sh", "-c", script), 30, io.BytesIO(), tmp_path)

    assert str(caught.value) == (
        f"the backup command `sh -c '{script}'` exited with status 3: vault is sealed"
    )


def test_a_failure_without_stderr_says_so(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"^the backup command `false` exited with status 1 and"):
        run_backup_command(("false",), 30, io.BytesIO(), tmp_path)


def test_a_command_killed_by_a_signal_is_a_source_error_naming_the_signal(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="was killed by signal SIGTERM"):
        run_backup_command(("sh", "-c", "kill -TERM $$"), 30, io.BytesIO(), tmp_path)


def test_a_silent_command_is_killed_at_its_timeout(tmp_path: Path) -> None:
    started = time.monotonic()

    with pytest.raises(SourceError, match=r"`sleep 60` did not finish within 0\.5 seconds"):
        run_backup_command(("sleep", "60"), 0.5, io.BytesIO(), tmp_path)

    assert time.monotonic() - started < KILLED_SOON


def test_a_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    script = "echo $$ > leader.pid; sleep 60 & sleep 60 & echo data; wait"
    started = time.monotonic()

    with pytest.raises(SourceError, match="did not finish within 1 seconds"):
        run_backup_command(("sh", "-c", script), 1, io.BytesIO(), tmp_path)

    assert time.monotonic() - started < KILLED_SOON
    pgid = read_pid(tmp_path / "leader.pid")
    assert living_members_of_group(pgid) == []


def test_a_missing_executable_is_a_source_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(
        SourceError,
        match="the backup command `vaultctl-missing export` cannot be started because "
        "vaultctl-missing was not found",
    ):
        run_backup_command(("vaultctl-missing", "export"), 30, io.BytesIO(), tmp_path)


def test_a_file_without_execute_permission_is_a_source_error_naming_it(tmp_path: Path) -> None:
    tool = tmp_path / "export.sh"
    tool.write_text("#!/bin/sh\necho hi\n")
    tool.chmod(0o644)

    with pytest.raises(SourceError, match=f"because {tool} is not executable"):
        run_backup_command((str(tool),), 30, io.BytesIO(), tmp_path)


def test_a_missing_working_folder_is_a_source_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "gone"

    with pytest.raises(SourceError, match=f"the working folder {missing} of the backup command"):
        run_backup_command(("true",), 30, io.BytesIO(), missing)


def test_an_empty_command_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="the backup command is empty"):
        run_backup_command((), 30, io.BytesIO(), tmp_path)


def test_a_failing_sink_stops_the_backup_command_and_its_group(tmp_path: Path) -> None:
    script = "echo $$ > leader.pid; sleep 60 & exec cat /dev/zero"

    with pytest.raises(IntegrityError, match="the storage went away"):
        run_backup_command(("sh", "-c", script), 30, FailingSink(), tmp_path)

    assert living_members_of_group(read_pid(tmp_path / "leader.pid")) == []


# -- restore ---------------------------------------------------------------


def test_the_restore_command_receives_the_data_exactly(tmp_path: Path) -> None:
    payload = os.urandom(PAYLOAD_SIZE)

    stats = run_restore_command(
        ("sh", "-c", "cat > imported.bin"), 30, io.BytesIO(payload), tmp_path
    )

    assert (tmp_path / "imported.bin").read_bytes() == payload
    assert stats == SourceStats(items=1, content_bytes=PAYLOAD_SIZE)


def test_a_restore_command_that_exits_early_is_reported_by_its_status(tmp_path: Path) -> None:
    script = "head -c 10 > /dev/null; echo 'import failed: bad header' >&2; exit 4"

    with pytest.raises(SourceError, match="exited with status 4: import failed: bad header"):
        run_restore_command(("sh", "-c", script), 30, io.BytesIO(bytes(PAYLOAD_SIZE)), tmp_path)


def test_a_restore_command_that_stops_reading_but_succeeds_is_a_success(tmp_path: Path) -> None:
    stats = run_restore_command(
        ("sh", "-c", "head -c 10 > /dev/null"), 30, io.BytesIO(bytes(PAYLOAD_SIZE)), tmp_path
    )

    assert stats.items == 1


def test_restore_command_messages_on_stdout_explain_its_failure(tmp_path: Path) -> None:
    script = "cat > /dev/null; echo 'imported 0 of 3 secrets'; exit 2"

    with pytest.raises(SourceError, match="exited with status 2: imported 0 of 3 secrets"):
        run_restore_command(("sh", "-c", script), 30, io.BytesIO(b"data"), tmp_path)


def test_a_restore_command_that_never_reads_is_killed_at_its_timeout(tmp_path: Path) -> None:
    started = time.monotonic()

    with pytest.raises(SourceError, match="the restore command `sleep 60` did not finish within 1"):
        run_restore_command(("sleep", "60"), 1, io.BytesIO(bytes(PAYLOAD_SIZE)), tmp_path)

    assert time.monotonic() - started < KILLED_SOON


def test_a_missing_restore_executable_is_a_source_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="because vaultctl-missing was not found"):
        run_restore_command(("vaultctl-missing", "import"), 30, io.BytesIO(b"x"), tmp_path)


def test_a_failing_input_stream_stops_the_restore_command_and_its_group(tmp_path: Path) -> None:
    script = "echo $$ > leader.pid; sleep 60 & exec cat > /dev/null"

    with pytest.raises(IntegrityError, match="the backup is damaged"):
        run_restore_command(("sh", "-c", script), 30, FailingStream(), tmp_path)

    assert living_members_of_group(read_pid(tmp_path / "leader.pid")) == []
