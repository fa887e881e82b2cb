"""The files source against real trees, real tar streams and GNU tar."""

from __future__ import annotations

import io
import os
import shutil
import socket
import stat
import subprocess
import sys
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reconciler.errors import IntegrityError, RestoreError, SourceError
from reconciler.sources.stats import SourceStats
from reconciler.sources.tar_reader import read_tree
from reconciler.sources.tree_restore import restore_tree
from reconciler.sources.tree_walk import write_tree
from reconciler.streams import CHUNK_SIZE

BASE_NS = 1_700_000_000_123_456_789
NON_UTF8_NAME = os.fsdecode(b"caf\xe9.bin")
BIG_SIZE = 2 * CHUNK_SIZE + 12_345

Description = dict[str, tuple[str, int, int, bytes]]


# -- helpers ---------------------------------------------------------------


def build_tree(root: Path) -> None:
    """A tree with every kind of entry the files source stores, odd mtimes included."""
    root.mkdir()
    (root / "plain.txt").write_bytes(b"hello\n")
    (root / "zero-length").write_bytes(b"")
    (root / "setuid-tool").write_bytes(b"#!/bin/sh\n")
    (root / "setuid-tool").chmod(0o4755)
    (root / "private.key").write_bytes(b"secret")
    (root / "private.key").chmod(0o400)
    (root / "old.txt").write_bytes(b"before 1970")
    (root / "empty").mkdir(mode=0o750)
    (root / "sticky").mkdir()
    (root / "sticky" / "note").write_bytes(b"n")
    (root / "with space").mkdir()
    (root / "with space" / "é ü.txt").write_bytes("non-ASCII ✓".encode())
    (root / NON_UTF8_NAME).write_bytes(b"latin-1 name")
    long_folder = root / ("long-" * 12) / ("name-" * 12)  # beyond ustar's 100 bytes
    long_folder.mkdir(parents=True)
    (long_folder / ("file-" * 30)).write_bytes(b"long")
    (root / "long-link").symlink_to("target-" * 20)
    deep = root / "deep" / "a" / "b" / "c"
    deep.mkdir(parents=True)
    (deep / "d.bin").write_bytes(os.urandom(BIG_SIZE))
    (root / "rel-link").symlink_to("plain.txt")
    (root / "dir-link").symlink_to("deep/a")
    (root / "broken-link").symlink_to("does/not/exist")
    (root / "abs-link").symlink_to("/etc")
    (root / "sticky").chmod(0o1777)
    set_mtimes(root)
    os.utime(root / "old.txt", ns=(-1_500_000_001, -1_500_000_001))


def set_mtimes(root: Path) -> None:
    """Give every entry a distinct nanosecond mtime, folders after their contents."""
    paths = sorted(walk(root), key=lambda path: len(path.parts), reverse=True)
    for index, path in enumerate([*paths, root]):
        ns = BASE_NS + index * 1_000_001
        os.utime(path, ns=(ns, ns), follow_symlinks=False)


def walk(root: Path) -> Iterator[Path]:
    """Every path below ``root``, not following symbolic links."""
    for entry in sorted(os.scandir(root), key=lambda entry: entry.name):
        path = Path(entry.path)
        yield path
        if entry.is_dir(follow_symlinks=False):
            yield from walk(path)


def describe(root: Path) -> Description:
    """Kind, mode, mtime and content (or link target) of the root and each entry."""
    result: Description = {}
    for path in [root, *walk(root)]:
        st = os.lstat(path)
        name = path.relative_to(root).as_posix()
        if stat.S_ISLNK(st.st_mode):
            entry = ("link", 0, st.st_mtime_ns, os.fsencode(os.readlink(path)))
        elif stat.S_ISDIR(st.st_mode):
            entry = ("dir", stat.S_IMODE(st.st_mode), st.st_mtime_ns, b"")
        else:
            entry = ("file", stat.S_IMODE(st.st_mode), st.st_mtime_ns, path.read_bytes())
        result[name] = entry
    return result


def backup(root: Path, exclude: tuple[str, ...] = ()) -> bytes:
    out = io.BytesIO()
    write_tree(root, exclude, out)
    return out.getvalue()


def archive_names(data: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        return archive.getnames()


def make_tar(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    """A well-formed PAX tar holding exactly ``members`` (which may be hostile)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            archive.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return out.getvalue()


def entry(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.mode = 0o644
    return info


class ChunkRecorder:
    """A sink that keeps what it is given and the size of its largest write."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.largest_write = 0

    def write(self, data: bytes) -> int:
        self.data += data
        self.largest_write = max(self.largest_write, len(data))
        return len(data)


class ChangesFileOnFirstContent:
    """A sink that resizes ``path`` as soon as the backup has read its first chunk."""

    def __init__(self, path: Path, new_size: int) -> None:
        self.path = path
        self.new_size = new_size
        self.done = False

    def write(self, data: bytes) -> int:
        if not self.done and len(data) == CHUNK_SIZE:
            os.truncate(self.path, self.new_size)
            self.done = True
        return len(data)


# -- round trip ------------------------------------------------------------


def test_a_tree_round_trips_byte_for_byte_with_modes_and_nanosecond_mtimes(
    tmp_path: Path,
) -> None:
    source = tmp_path / "source"
    build_tree(source)
    expected = describe(source)

    data = backup(source)
    stats = restore_tree(io.BytesIO(data), tmp_path / "restored")

    assert describe(tmp_path / "restored") == expected
    assert stats == SourceStats(items=len(expected), content_bytes=sum_of_file_sizes(expected))


def sum_of_file_sizes(description: Description) -> int:
    return sum(
        len(content) for kind, _mode, _mtime, content in description.values() if kind == "file"
    )


def test_symlinks_are_restored_as_links_and_never_followed(tmp_path: Path) -> None:
    source = tmp_path / "source"
    build_tree(source)

    data = backup(source)
    restore_tree(io.BytesIO(data), tmp_path / "restored")

    restored = tmp_path / "restored"
    assert os.readlink(restored / "rel-link") == "plain.txt"
    assert os.readlink(restored / "broken-link") == "does/not/exist"
    assert os.readlink(restored / "abs-link") == "/etc"
    assert os.readlink(restored / "dir-link") == "deep/a"
    names = archive_names(data)
    assert "abs-link" in names
    assert not any(name.startswith(("abs-link/", "dir-link/")) for name in names)


def test_exact_mtimes_survive_for_files_folders_links_and_times_before_1970(
    tmp_path: Path,
) -> None:
    source = tmp_path / "source"
    build_tree(source)

    restore_tree(io.BytesIO(backup(source)), tmp_path / "restored")

    for name in ["old.txt", "deep/a/b/c/d.bin", "deep/a", "empty", "rel-link", "broken-link", "."]:
        original = os.lstat(source / name).st_mtime_ns
        assert os.lstat(tmp_path / "restored" / name).st_mtime_ns == original, name
    assert os.lstat(tmp_path / "restored" / "old.txt").st_mtime_ns == -1_500_000_001


def test_the_same_tree_always_gives_the_same_bytes_in_sorted_order(tmp_path: Path) -> None:
    source = tmp_path / "source"
    build_tree(source)

    first, second = backup(source), backup(source)

    assert first == second
    names = archive_names(first)
    assert names[0] == "."
    assert names.index("deep") < names.index("deep/a") < names.index("deep/a/b/c/d.bin")
    top_level = [name for name in names[1:] if "/" not in name]
    assert top_level == sorted(top_level, key=os.fsencode)


def test_gnu_tar_lists_the_archive(tmp_path: Path) -> None:
    source = tmp_path / "source"
    build_tree(source)
    archive = tmp_path / "backup.tar"
    archive.write_bytes(backup(source))

    listing = subprocess.run(
        ["tar", "-tvf", str(archive)], capture_output=True, check=True
    ).stdout.decode("utf-8", errors="replace")

    assert "plain.txt" in listing
    assert "with space/é ü.txt" in listing
    assert "rel-link -> plain.txt" in listing
    assert "-rwsr-xr-x" in listing
    assert "drwxrwxrwt" in listing
    assert "empty/" in listing


def test_gnu_tar_extracts_the_same_tree_with_exact_mtimes(tmp_path: Path) -> None:
    source = tmp_path / "source"
    build_tree(source)
    (source / "old.txt").unlink()  # GNU tar warns about times before 1970
    set_mtimes(source)
    archive = tmp_path / "backup.tar"
    archive.write_bytes(backup(source))
    extracted = tmp_path / "extracted"
    extracted.mkdir()

    subprocess.run(
        ["tar", "-xpf", str(archive), "-C", str(extracted)], capture_output=True, check=True
    )

    assert describe(extracted) == describe(source)


def test_files_are_read_and_written_in_chunks_of_at_most_one_mebibyte(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "big").write_bytes(os.urandom(3 * CHUNK_SIZE + 1))
    sink = ChunkRecorder()

    stats = write_tree(source, (), sink)

    assert sink.largest_write <= CHUNK_SIZE
    assert stats == SourceStats(items=2, content_bytes=3 * CHUNK_SIZE + 1)
    assert read_tree(io.BytesIO(bytes(sink.data))) == stats


# -- exclusions and skipped kinds -----------------------------------------


def test_exclude_globs_match_base_names_relative_paths_and_drop_whole_folders(
    tmp_path: Path,
) -> None:
    source = tmp_path / "source"
    for name in [
        "keep.txt",
        "drop.tmp",
        "sub/drop.tmp",
        "sub/keep.log",
        "sub/drop.log",
        "cache/a",
        "sub/cache/b",
        "build/out.o",
    ]:
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes(b"x")

    data = backup(source, ("*.tmp", "cache", "sub/drop.log", "build/*"))

    assert archive_names(data) == [".", "build", "keep.txt", "sub", "sub/keep.log"]


def test_sockets_and_fifos_are_skipped_without_an_error(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "file").write_bytes(b"data")
    os.mkfifo(source / "fifo")
    # AF_UNIX paths are limited to ~108 bytes, so bind relative to the folder.
    server = socket.socket(socket.AF_UNIX)
    cwd = os.getcwd()
    try:
        os.chdir(source)
        server.bind("socket")
    finally:
        os.chdir(cwd)
        server.close()

    assert archive_names(backup(source)) == [".", "file"]


# -- source errors ---------------------------------------------------------


def test_a_missing_source_folder_is_a_source_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"

    with pytest.raises(SourceError, match=f"the folder {missing} given as source does not exist"):
        write_tree(missing, (), io.BytesIO())


def test_a_file_given_as_source_folder_is_a_source_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"x")

    with pytest.raises(SourceError, match="is not a folder"):
        write_tree(tmp_path / "file", (), io.BytesIO())


def backup_error_without_read_override(root: Path) -> str:
    """The SourceError message of backing up ``root`` by a user who obeys file modes.

    root can read any file, so as root the backup runs in a child process
    without the capabilities that bypass permission checks."""
    if os.geteuid() != 0:
        with pytest.raises(SourceError) as caught:
            write_tree(root, (), io.BytesIO())
        return str(caught.value)
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root, and setpriv is missing to drop the right to read any file")
    script = (
        "import io, sys\n"
        "from pathlib import Path\n"
        "from reconciler.errors import SourceError\n"
        "from reconciler.sources.tree_walk import write_tree\n"
        "try:\n"
        "    write_tree(Path(sys.argv[1]), (), io.BytesIO())\n"
        "except SourceError as exc:\n"
        "    print(exc)\n"
    )
    caps = "-dac_override,-dac_read_search"
    result = subprocess.run(
        [
            setpriv,
            f"--inh-caps={caps}",
            f"--bounding-set={caps}",
            sys.executable,
            "-c",
            script,
            str(root),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def test_an_unreadable_file_is_a_source_error_naming_it(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "readable").write_bytes(b"ok")
    (source / "locked").write_bytes(b"no")
    (source / "locked").chmod(0o000)

    message = backup_error_without_read_override(source)

    assert f"the file {source / 'locked'} in the source cannot be read" in message


def test_an_unreadable_folder_is_a_source_error_naming_it(tmp_path: Path) -> None:
    source = tmp_path / "source"
    (source / "locked").mkdir(parents=True)
    (source / "locked" / "inside").write_bytes(b"x")
    (source / "locked").chmod(0o000)
    try:
        message = backup_error_without_read_override(source)
    finally:
        (source / "locked").chmod(0o755)

    assert f"the folder {source / 'locked'} in the source cannot be read" in message


def test_a_file_that_shrinks_while_it_is_read_is_a_source_error(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    shrinking = source / "table.db"
    shrinking.write_bytes(os.urandom(3 * CHUNK_SIZE))

    with pytest.raises(SourceError, match=f"the file {shrinking} changed size"):
        write_tree(source, (), ChangesFileOnFirstContent(shrinking, CHUNK_SIZE + 10))


def test_a_file_that_grows_while_it_is_read_is_a_source_error(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    growing = source / "app.log"
    growing.write_bytes(os.urandom(2 * CHUNK_SIZE))

    with pytest.raises(SourceError, match=f"the file {growing} changed size"):
        write_tree(source, (), ChangesFileOnFirstContent(growing, 4 * CHUNK_SIZE))


# -- restore safety --------------------------------------------------------

Members = list[tuple[tarfile.TarInfo, bytes]]

HOSTILE_ARCHIVES: dict[str, Callable[[Path], Members]] = {
    "absolute name": lambda outside: [(entry(f"{outside}/evil"), b"x")],
    "dot-dot name": lambda outside: [(entry("../outside/evil"), b"x")],
    "dot-dot inside a name": lambda outside: [(entry("a/../../outside/evil"), b"x")],
    "file below an absolute symlink": lambda outside: [
        (entry("link", tarfile.SYMTYPE, str(outside)), b""),
        (entry("link/evil"), b"x"),
    ],
    "file below a relative symlink": lambda outside: [
        (entry("link", tarfile.SYMTYPE, "../outside"), b""),
        (entry("link/evil"), b"x"),
    ],
    "file replacing a symlink": lambda outside: [
        (entry("evil", tarfile.SYMTYPE, f"{outside}/evil"), b""),
        (entry("evil"), b"x"),
    ],
    "hard link": lambda outside: [(entry("hard", tarfile.LNKTYPE, "/etc/passwd"), b"")],
    "character device": lambda outside: [(entry("null", tarfile.CHRTYPE), b"")],
    "block device": lambda outside: [(entry("disk", tarfile.BLKTYPE), b"")],
    "FIFO": lambda outside: [(entry("pipe", tarfile.FIFOTYPE), b"")],
    "root that is a file": lambda outside: [(entry("."), b"x")],
}


@pytest.mark.parametrize("case", sorted(HOSTILE_ARCHIVES))
def test_restore_refuses_hostile_archives_and_writes_nothing_outside_the_target(
    tmp_path: Path, case: str
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    data = make_tar(*HOSTILE_ARCHIVES[case](outside))

    with pytest.raises(IntegrityError, match="in the backup"):
        restore_tree(io.BytesIO(data), tmp_path / "target")

    assert list(outside.iterdir()) == []


@pytest.mark.parametrize("case", sorted(HOSTILE_ARCHIVES))
def test_read_tree_refuses_hostile_archives_too(tmp_path: Path, case: str) -> None:
    data = make_tar(*HOSTILE_ARCHIVES[case](tmp_path / "outside"))

    with pytest.raises(IntegrityError):
        read_tree(io.BytesIO(data))


def test_an_entry_below_a_file_of_the_same_archive_is_an_integrity_error(tmp_path: Path) -> None:
    data = make_tar((entry("a"), b"file"), (entry("a/b"), b"x"))

    with pytest.raises(IntegrityError, match="'a/b'"):
        restore_tree(io.BytesIO(data), tmp_path / "target")


def test_restore_does_not_write_through_a_symlink_already_in_the_target(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    target = tmp_path / "target"
    target.mkdir()
    (target / "sub").symlink_to(outside)
    data = make_tar((entry("sub/evil"), b"x"))

    with pytest.raises(RestoreError, match="not a folder"):
        restore_tree(io.BytesIO(data), target)

    assert list(outside.iterdir()) == []


def test_restore_refuses_to_overwrite_a_file_already_in_the_target(tmp_path: Path) -> None:
    source = tmp_path / "source"
    build_tree(source)
    target = tmp_path / "target"
    target.mkdir()
    (target / "plain.txt").write_bytes(b"keep me")

    with pytest.raises(RestoreError, match=f"already holds {target / 'plain.txt'}"):
        restore_tree(io.BytesIO(backup(source)), target)

    assert (target / "plain.txt").read_bytes() == b"keep me"


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give files to other owners")
def test_owners_are_restored_when_running_as_root(tmp_path: Path) -> None:
    source = tmp_path / "source"
    (source / "sub").mkdir(parents=True)
    (source / "sub" / "file").write_bytes(b"x")
    (source / "link").symlink_to("sub/file")
    os.chown(source / "sub" / "file", 4321, 8765)
    os.chown(source / "sub", 1111, 2222)
    os.chown(source / "link", 3333, 4444, follow_symlinks=False)

    restore_tree(io.BytesIO(backup(source)), tmp_path / "restored")

    restored = tmp_path / "restored"
    assert owner(restored / "sub" / "file") == (4321, 8765)
    assert owner(restored / "sub") == (1111, 2222)
    assert owner(restored / "link") == (3333, 4444)


def owner(path: Path) -> tuple[int, int]:
    st = os.lstat(path)
    return st.st_uid, st.st_gid


# -- damaged archives ------------------------------------------------------


def damaged_archive_cases(data: bytes) -> dict[str, bytes]:
    """Ways to cut or damage ``data``, an archive of several files."""
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        members = archive.getmembers()
        end = archive.offset
    big = next(member for member in members if member.size > 10_000)
    after_big = next(member for member in members if member.offset > big.offset_data)
    damaged_header = bytearray(data)
    damaged_header[after_big.offset + 200 : after_big.offset + 210] = b"garbage!!!"
    return {
        "cut inside file data": data[: big.offset_data + 5000],
        "cut exactly at a header": data[: after_big.offset],
        "cut inside a header": data[: after_big.offset + 100],
        "cut before the end marker": data[:end],
        "cut inside the end marker": data[: end + 512],
        "damaged header": bytes(damaged_header),
        "empty stream": b"",
        "not a tar": b"this is not a tar archive" * 100,
    }


def test_read_tree_counts_the_entries_and_bytes_of_a_sound_archive(tmp_path: Path) -> None:
    source = tmp_path / "source"
    build_tree(source)

    assert read_tree(io.BytesIO(backup(source))) == SourceStats(
        items=len(describe(source)), content_bytes=sum_of_file_sizes(describe(source))
    )


@pytest.mark.parametrize(
    "case",
    [
        "cut inside file data",
        "cut exactly at a header",
        "cut inside a header",
        "cut before the end marker",
        "cut inside the end marker",
        "damaged header",
        "empty stream",
        "not a tar",
    ],
)
def test_read_and_restore_detect_a_truncated_or_damaged_archive(tmp_path: Path, case: str) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "a.bin").write_bytes(os.urandom(50_000))
    (source / "b.txt").write_bytes(b"b" * 700)
    (source / "c.txt").write_bytes(b"c")
    damaged = damaged_archive_cases(backup(source))[case]

    with pytest.raises(IntegrityError, match="in the backup"):
        read_tree(io.BytesIO(damaged))
    with pytest.raises(IntegrityError, match="in the backup"):
        restore_tree(io.BytesIO(damaged), tmp_path / "restored")
