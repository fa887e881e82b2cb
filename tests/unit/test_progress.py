"""Progress reporting: log lines off a terminal, a bar on one."""

from __future__ import annotations

import io
import threading

from reconciler.cli.progress import TransferProgress, human_bytes, human_seconds


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_off_a_terminal_a_line_comes_every_interval_with_bytes_rate_and_time_left() -> None:
    clock, stream = Clock(), io.StringIO()
    progress = TransferProgress(stream, terminal=False, interval=10, clock=clock)
    progress.start("region-west: backing up data", 2_000_000_000)

    clock.now += 5
    progress.advance(500_000_000)
    assert lines(stream) == []  # not yet ten seconds

    clock.now += 5
    progress.advance(500_000_000)
    clock.now += 1
    progress.advance(0)

    assert lines(stream) == [
        "region-west: backing up data: 1.0 GB of about 2.0 GB, 100.0 MB/s, about 10 s left"
    ]


def test_an_unknown_or_exceeded_total_gives_bytes_and_rate_only() -> None:
    clock, stream = Clock(), io.StringIO()
    progress = TransferProgress(stream, terminal=False, interval=10, clock=clock)
    progress.start("first backup", None)
    clock.now += 20
    progress.advance(4_000_000)
    progress.start("bigger than last time", 1_000)
    clock.now += 20
    progress.advance(2_000)

    assert lines(stream) == [
        "first backup: 4.0 MB, 200.0 kB/s",
        "bigger than last time: 2.0 kB, 100 bytes/s",
    ]


def test_bytes_outside_a_transfer_are_ignored_and_finish_is_idempotent() -> None:
    clock, stream = Clock(), io.StringIO()
    with TransferProgress(stream, terminal=False, interval=1, clock=clock) as progress:
        clock.now += 5
        progress.advance(10)
        progress.start("a", 100)
        progress.finish()
        progress.finish()
        clock.now += 5
        progress.advance(10)
    assert stream.getvalue() == ""


def test_bytes_counted_from_many_threads_all_count() -> None:
    clock, stream = Clock(), io.StringIO()
    progress = TransferProgress(stream, terminal=False, interval=1e9, clock=clock)
    progress.start("restoring data", None)

    def count() -> None:
        for _ in range(1000):
            progress.advance(1)

    threads = [threading.Thread(target=count) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    clock.now += 2e9
    progress.advance(0)

    assert lines(stream)[0].startswith("restoring data: 8.0 kB")


def test_on_a_terminal_a_bar_shows_only_after_the_delay_and_is_erased_at_the_end() -> None:
    clock, stream = Clock(), io.StringIO()
    progress = TransferProgress(stream, terminal=True, delay=1.0, clock=clock)
    progress.start("region-west: backing up data", 1_000_000)
    progress.advance(1000)
    assert progress._bar is None  # quick work shows nothing

    clock.now += 2
    progress.advance(1000)
    assert progress._bar is not None
    task = progress._bar.tasks[0]
    assert (task.completed, task.total) == (2000, 1_000_000)

    progress.finish()
    assert progress._bar is None


def test_human_units() -> None:
    assert human_bytes(999) == "999 bytes"
    assert human_bytes(1_500_000) == "1.5 MB"
    assert human_bytes(4.2e12) == "4.2 TB"
    assert human_seconds(44.6) == "45 s"
    assert human_seconds(200) == "3 min 20 s"
    assert human_seconds(7500) == "2 h 5 min"
