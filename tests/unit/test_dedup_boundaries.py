"""File boundaries in the files source's tar stream (reconciler.dedup.boundaries)."""

from __future__ import annotations

import io
import random
import tarfile
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.dedup.boundaries import (
    ChunkFeeder,
    FileContent,
    TarBoundarySink,
)
from reconciler.dedup.chunk_id import chunk_id
from reconciler.dedup.chunker import Chunk, Chunker, ChunkParams
from reconciler.errors import SourceError
from reconciler.sources.tree_walk import write_tree

# Small sizes: every entry's headers (at least 1536 bytes) exceed the minimum,
# so each file's content starts a chunk and examples stay fast.
SMALL = ChunkParams(average=1024, minimum=256, maximum=4096)
SEED = 0x5EED_0F_1D
ID_KEY = bytes(range(32))
LONG_NAME = "a-name-longer-than-the-hundred-bytes-a-ustar-header-holds-" * 3


class Recorder:
    """A BoundaryTarget keeping the bytes it is given and the files announced."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.files: list[FileContent] = []
        self.starts_seen_at: list[int] = []

    def write(self, data: memoryview, /) -> None:
        self.data += data

    def file_starts(self, content: FileContent, /) -> None:
        self.files.append(content)
        self.starts_seen_at.append(len(self.data))


class Collect:
    """A ByteSink keeping the whole stream."""

    def __init__(self) -> None:
        self.buffer = io.BytesIO()
        self.writes = 0

    def write(self, data: bytes, /) -> None:
        self.buffer.write(data)
        self.writes += 1


def make_tree(root: Path) -> None:
    """Small, large, empty files, names needing PAX headers, symlinks, folders."""
    rng = random.Random(7)
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "empty-dir").mkdir()
    (root / "small.txt").write_bytes(b"hello\n")
    (root / "empty").write_bytes(b"")
    (root / "large.bin").write_bytes(rng.randbytes(700_000))  # streamed, not read whole
    (root / "exact-block").write_bytes(rng.randbytes(1024))
    (root / "sub" / LONG_NAME).write_bytes(rng.randbytes(3000))
    (root / "sub" / "déjà vu.txt").write_bytes(b"non-ascii name\n")
    (root / "sub" / "deeper" / "big-after-small").write_bytes(rng.randbytes(300_000))
    (root / "link").symlink_to("small.txt")
    (root / "sub" / "long-link").symlink_to("../" + LONG_NAME + "/nowhere")


def tar_of(root: Path) -> tuple[bytes, int]:
    sink = Collect()
    write_tree(root, (), sink)
    return sink.buffer.getvalue(), sink.writes


def expected_files(stream: bytes) -> list[FileContent]:
    """What tarfile itself says: each non-empty regular file's data offset and size."""
    with tarfile.open(fileobj=io.BytesIO(stream), mode="r:") as archive:
        return [
            FileContent(m.name.encode("utf-8"), m.offset_data, m.size)
            for m in archive.getmembers()
            if m.isreg() and m.size
        ]


def parse(pieces: list[bytes]) -> Recorder:
    recorder = Recorder()
    sink = TarBoundarySink(recorder)
    for piece in pieces:
        sink.write(piece)
    sink.close()
    return recorder


def test_the_boundaries_are_each_regular_files_content_offset(tmp_path: Path) -> None:
    make_tree(tmp_path)
    stream, _ = tar_of(tmp_path)
    recorder = Recorder()
    write_tree(tmp_path, (), TarBoundarySink(recorder))  # the writer's own pieces

    expected = expected_files(stream)
    assert recorder.files == expected
    assert {f.name for f in expected} >= {b"large.bin", f"sub/{LONG_NAME}".encode()}
    # Announced just before the content's first byte, and every byte passed on.
    assert recorder.starts_seen_at == [f.offset for f in expected]
    assert bytes(recorder.data) == stream


def test_the_boundaries_do_not_depend_on_how_the_stream_is_cut(tmp_path: Path) -> None:
    make_tree(tmp_path)
    stream, _ = tar_of(tmp_path)
    rng = random.Random(3)
    for largest in (1, 7, 511, 513, 5000):
        pieces, at = [], 0
        while at < len(stream):
            step = rng.randint(1, largest)
            pieces.append(stream[at : at + step])
            at += step
        assert parse(pieces).files == expected_files(stream), largest


def test_a_pax_size_record_overrides_the_ustar_size_field() -> None:
    # Files of 8 GiB and more have their size in a PAX record only.
    info = tarfile.TarInfo("huge")
    info.size = 9 << 30
    header = info.tobuf(tarfile.PAX_FORMAT)
    recorder = Recorder()
    recorder.write = lambda data, /: None  # type: ignore[method-assign]
    sink = TarBoundarySink(recorder)
    sink.write(header)
    zeros = bytes(1 << 20)
    for _ in range(info.size // len(zeros)):
        sink.write(zeros)
    sink.write(bytes(1024))  # the end of the archive
    sink.close()
    assert recorder.files == [FileContent(b"huge", len(header), 9 << 30)]


def test_a_stream_that_is_not_a_tar_archive_is_refused() -> None:
    with pytest.raises(SourceError, match="no valid header at byte 0"):
        parse([b"x" * 512])


def test_a_stream_that_ends_inside_an_entry_is_refused(tmp_path: Path) -> None:
    make_tree(tmp_path)
    stream, _ = tar_of(tmp_path)
    cut = expected_files(stream)[0].offset + 1
    with pytest.raises(SourceError, match="ends inside an entry"):
        parse([stream[:cut]])


def chunks_of(root: Path) -> tuple[list[Chunk], list[FileContent]]:
    chunks: list[Chunk] = []
    recorder = Recorder()
    feeder = ChunkFeeder(Chunker(SEED, SMALL), chunks.append)

    class Both:
        def write(self, data: memoryview, /) -> None:
            feeder.write(data)

        def file_starts(self, content: FileContent, /) -> None:
            recorder.file_starts(content)
            feeder.file_starts(content)

    write_tree(root, (), TarBoundarySink(Both()))
    feeder.finish()
    return chunks, recorder.files


def content_chunks(chunks: list[Chunk], content: FileContent) -> list[tuple[int, bytes]]:
    """(offset in the file, id) of the chunks starting in the file's content.

    The last one may run on into the next entry's headers."""
    end = content.offset + content.size
    return [
        (c.offset - content.offset, chunk_id(ID_KEY, c.data))
        for c in chunks
        if content.offset <= c.offset < end
    ]


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    before=st.lists(st.integers(0, 20_000), max_size=4),
    more_before=st.lists(st.integers(0, 20_000), max_size=3),
    size=st.integers(SMALL.minimum + 1, 60_000),
    seed=st.integers(0, 2**16),
)
def test_a_file_gives_the_same_chunks_wherever_it_sits(
    tmp_path: Path, before: list[int], more_before: list[int], size: int, seed: int
) -> None:
    content = random.Random(seed).randbytes(size)
    found = []
    # The second tree has more entries before the file: it sits further on.
    for name, sizes in (("one", before), ("two", [*before, *more_before, 1234])):
        root = Path(tempfile.mkdtemp(prefix=name, dir=tmp_path))
        (root / "d").mkdir()
        for i, other in enumerate(sizes):
            (root / "d" / f"a{i}").write_bytes(random.Random(other + i).randbytes(other))
        (root / "d" / "the-file").write_bytes(content)
        (root / "d" / "z-after").write_bytes(name.encode())
        chunks, files = chunks_of(root)
        target = next(f for f in files if f.name == b"d/the-file")
        found.append((target.offset, content_chunks(chunks, target)))

    (offset_one, one), (offset_two, two) = found
    assert offset_one < offset_two
    assert one[0][0] == two[0][0] == 0  # the content starts a chunk in both
    # Every chunk that ends inside the content is the same; only the last, which
    # runs on into the next entry's headers, may differ.
    assert one[:-1] == two[:-1]
