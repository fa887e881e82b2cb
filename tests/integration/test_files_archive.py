"""The files source's own tar writer and reader, against tarfile and GNU tar.

``write_tree`` builds headers itself (not with a ``TarInfo`` per entry) and
``restore_tree`` parses archives itself and writes small files on several
threads; these tests hold both to what ``tarfile`` and GNU tar write and read.
"""

from __future__ import annotations

import io
import os
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from reconciler.errors import IntegrityError, RestoreError
from reconciler.sources.stats import SourceStats
from reconciler.sources.tar_reader import read_tree
from reconciler.sources.tree_restore import restore_tree
from reconciler.sources.tree_walk import write_tree
from tests.integration.test_source_files import BASE_NS, build_tree, describe, set_mtimes, walk

NS = 1_000_000_000


def reference_archive(root: Path) -> bytes:
    """The archive as ``tarfile`` writes it, entry by entry in write_tree's order,
    with the exact PAX mtime record (the format write_tree promises)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for path in [root, *sorted_walk(root)]:
            st = os.lstat(path)
            name = "." if path == root else path.relative_to(root).as_posix()
            info = tarfile.TarInfo(name)
            info.mode = stat.S_IMODE(st.st_mode)
            info.uid, info.gid = st.st_uid, st.st_gid
            info.uname = owner_name(st.st_uid, "user")
            info.gname = owner_name(st.st_gid, "group")
            info.mtime = st.st_mtime_ns // NS
            seconds, fraction = divmod(abs(st.st_mtime_ns), NS)
            sign = "-" if st.st_mtime_ns < 0 else ""
            info.pax_headers = {"mtime": f"{sign}{seconds}.{fraction:09d}"}
            if stat.S_ISDIR(st.st_mode):
                info.type = tarfile.DIRTYPE
                archive.addfile(info)
            elif stat.S_ISLNK(st.st_mode):
                info.type = tarfile.SYMTYPE
                info.linkname = os.readlink(path)
                archive.addfile(info)
            else:
                info.size = st.st_size
                with path.open("rb") as data:
                    archive.addfile(info, data)
    return out.getvalue()


def owner_name(number: int, kind: str) -> str:
    import grp
    import pwd

    try:
        return pwd.getpwuid(number).pw_name if kind == "user" else grp.getgrgid(number).gr_name
    except KeyError:
        return ""


def sorted_walk(root: Path) -> list[Path]:
    """Depth first, each folder's names sorted by their bytes (write_tree's order)."""
    found = []
    for name in sorted(os.listdir(root), key=os.fsencode):
        path = root / name
        found.append(path)
        if path.is_dir() and not path.is_symlink():
            found.extend(sorted_walk(path))
    return found


def backup(root: Path) -> bytes:
    out = io.BytesIO()
    write_tree(root, (), out)
    return out.getvalue()


def odd_tree(root: Path) -> None:
    """build_tree's tree and more: long non-ASCII names, ids beyond ustar, many files."""
    build_tree(root)
    (root / ("x" * 99 + "é")).write_bytes(b"a")
    (root / ("d" * 100)).mkdir()
    os.symlink(os.fsdecode(b"\xff\xfe-not-utf8-target"), root / "odd-link")
    big_ids = root / "big-ids"
    big_ids.write_bytes(b"ids")
    if os.geteuid() == 0:
        os.chown(big_ids, 3_000_000, 4_000_000)
    many = root / "many"
    many.mkdir()
    for index in range(150):
        (many / f"{index:03d}.json").write_bytes(b'{"n": %d}\n' % index * (index + 1))
    (root / "large.bin").write_bytes(os.urandom(700_000))
    (root / "large.bin").chmod(0o4750)
    set_mtimes(root)


def test_headers_are_byte_for_byte_what_tarfile_writes(tmp_path: Path) -> None:
    source = tmp_path / "source"
    odd_tree(source)

    assert backup(source) == reference_archive(source)


def test_an_odd_tree_round_trips_with_modes_and_nanosecond_mtimes(tmp_path: Path) -> None:
    source = tmp_path / "source"
    odd_tree(source)
    data = backup(source)

    stats = restore_tree(io.BytesIO(data), tmp_path / "restored")

    assert describe(tmp_path / "restored") == describe(source)
    assert stats == read_tree(io.BytesIO(data))
    assert stats.items == len(describe(source))
    large = os.lstat(tmp_path / "restored" / "large.bin")
    assert stat.S_IMODE(large.st_mode) == 0o4750


def test_an_archive_gnu_tar_writes_in_posix_format_restores(tmp_path: Path) -> None:
    source = tmp_path / "source"
    odd_tree(source)
    (source / "old.txt").unlink()
    archive = tmp_path / "gnu.tar"
    subprocess.run(
        ["tar", "--format=posix", "-cf", str(archive), "-C", str(source), "."],
        check=True,
        capture_output=True,
    )

    restore_tree(io.BytesIO(archive.read_bytes()), tmp_path / "restored")

    found, expected = describe(tmp_path / "restored"), describe(source)
    # GNU tar stores the root folder's mtime too, but with the entries' own
    # order; compare everything except the root's mtime (set before its children).
    assert found.keys() == expected.keys()
    for name in expected:
        if name != ".":
            assert found[name] == expected[name], name


def test_a_ustar_archive_with_prefix_fields_is_read(tmp_path: Path) -> None:
    long_name = "a" * 60 + "/" + "b" * 60 + "/file.txt"
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for folder in ("a" * 60, "a" * 60 + "/" + "b" * 60):
            info = tarfile.TarInfo(folder)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            archive.addfile(info)
        info = tarfile.TarInfo(long_name)
        info.size = 5
        info.mode = 0o640
        info.mtime = BASE_NS // NS
        archive.addfile(info, io.BytesIO(b"hello"))

    assert read_tree(io.BytesIO(out.getvalue())) == SourceStats(items=3, content_bytes=5)
    restore_tree(io.BytesIO(out.getvalue()), tmp_path / "restored")
    restored = tmp_path / "restored" / long_name
    assert restored.read_bytes() == b"hello"
    assert os.lstat(restored).st_mtime_ns == BASE_NS // NS * NS


def test_a_large_file_already_in_the_target_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "large.bin").write_bytes(os.urandom(1_000_000))
    (source / "small.txt").write_bytes(b"small")
    target = tmp_path / "target"
    target.mkdir()
    (target / "large.bin").write_bytes(b"keep me")

    with pytest.raises(RestoreError, match=f"already holds {target / 'large.bin'}"):
        restore_tree(io.BytesIO(backup(source)), target)

    assert (target / "large.bin").read_bytes() == b"keep me"


def test_an_error_on_a_writer_thread_stops_the_restore(tmp_path: Path) -> None:
    source = tmp_path / "source"
    (source / "sub").mkdir(parents=True)
    for index in range(200):
        (source / "sub" / f"{index:03d}.txt").write_bytes(b"x" * index)
    target = tmp_path / "target"
    (target / "sub").mkdir(parents=True)
    (target / "sub" / "150.txt").write_bytes(b"keep me")

    with pytest.raises(RestoreError, match="already holds"):
        restore_tree(io.BytesIO(backup(source)), target)

    assert (target / "sub" / "150.txt").read_bytes() == b"keep me"


def test_a_pax_header_damaged_after_its_block_was_seen_intact_is_refused(tmp_path: Path) -> None:
    """The reader skips parsing PAX header blocks it has already checked; a block
    that differs (here: a bad checksum) is parsed, and refused."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("a", "b", "c"):
        (source / name).write_bytes(b"data")
    data = bytearray(backup(source))
    headers = [i for i in range(0, len(data), 512) if data[i + 156 : i + 157] == b"x"]
    third = headers[3]
    data[third + 100] ^= 0x01  # the mode field of the fourth PAX header block

    with pytest.raises(IntegrityError, match="in the backup"):
        read_tree(io.BytesIO(bytes(data)))


def test_entries_come_sorted_by_bytes_at_every_level(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    for name in ("b", "a", "B", "_", "é"):
        (source / name).mkdir()
        (source / name / "z").write_bytes(b"")
        (source / name / "Z").write_bytes(b"")
    with tarfile.open(fileobj=io.BytesIO(backup(source))) as archive:
        names = archive.getnames()
    expected = ["."] + [
        name
        for folder in sorted(["b", "a", "B", "_", "é"], key=os.fsencode)
        for name in (folder, f"{folder}/Z", f"{folder}/z")
    ]
    assert names == expected
    assert [p.name for p in walk(source)][:1] == ["B"]
