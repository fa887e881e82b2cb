"""File boundaries in the files source's tar stream (reconciler.dedup.boundaries)."""

from __future__ import annotations

import functools
import io
import itertools
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
    RunStart,
    TarBoundarySink,
)
from reconciler.dedup.chunk_id import chunk_id
from reconciler.dedup.chunker import LARGE_FILE, SMALL_RUN_PARAMS, Chunk, Chunker, ChunkParams
from reconciler.errors import SourceError
from reconciler.sources.tree_walk import write_tree

# Small sizes so that examples stay fast; the logic is the same. Files of
# LARGE.minimum bytes or more are cut at their start and end.
SMALL = ChunkParams(average=1024, minimum=256, maximum=4096)
LARGE = ChunkParams(average=4096, minimum=2048, maximum=16384)
SEED = 0x5EED_0F_1D
ID_KEY = bytes(range(32))
LONG_NAME = "a-name-longer-than-the-hundred-bytes-a-ustar-header-holds-" * 3


class Recorder:
    """A BoundaryTarget keeping the bytes it is given and the files announced."""

    def __init__(self, keep: bool = True) -> None:
        self.keep = keep
        self.seen = 0  # bytes written
        self.data = bytearray()  # those bytes, if kept
        self.files: list[FileContent] = []
        self.starts_seen_at: list[int] = []
        self.ends_seen_at: list[int] = []

    def write(self, data: memoryview, /) -> None:
        self.seen += len(data)
        if self.keep:
            self.data += data

    def file_starts(self, content: FileContent, /) -> None:
        assert len(self.starts_seen_at) == len(self.ends_seen_at), "a file started twice"
        self.files.append(content)
        self.starts_seen_at.append(self.seen)

    def file_ends(self) -> None:
        assert len(self.starts_seen_at) == len(self.ends_seen_at) + 1, "no file to end"
        self.ends_seen_at.append(self.seen)


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


def expected_files(stream: bytes, large_file: int = 1) -> list[FileContent]:
    """What tarfile itself says: each regular file's (of at least ``large_file``
    bytes) data offset and size."""
    with tarfile.open(fileobj=io.BytesIO(stream), mode="r:") as archive:
        return [
            FileContent(m.name.encode("utf-8"), m.offset_data, m.size)
            for m in archive.getmembers()
            if m.isreg() and m.size >= max(1, large_file)
        ]


def parse(pieces: list[bytes], large_file: int = 1) -> Recorder:
    recorder = Recorder()
    sink = TarBoundarySink(recorder, large_file)
    for piece in pieces:
        sink.write(piece)
    sink.close()
    return recorder


def test_the_boundaries_are_each_regular_files_content_offset(tmp_path: Path) -> None:
    make_tree(tmp_path)
    stream, _ = tar_of(tmp_path)
    recorder = Recorder()
    write_tree(tmp_path, (), TarBoundarySink(recorder, 1))  # the writer's own pieces

    expected = expected_files(stream)
    assert recorder.files == expected
    assert {f.name for f in expected} >= {b"large.bin", f"sub/{LONG_NAME}".encode()}
    # Announced just before the content's first byte and just after its last
    # (before the padding), and every byte passed on.
    assert recorder.starts_seen_at == [f.offset for f in expected]
    assert recorder.ends_seen_at == [f.offset + f.size for f in expected]
    assert bytes(recorder.data) == stream


def test_only_files_of_at_least_the_large_file_size_are_announced(tmp_path: Path) -> None:
    make_tree(tmp_path)
    stream, _ = tar_of(tmp_path)
    for threshold in (3000, 300_000, 300_001):
        recorder = parse([stream], threshold)
        expected = expected_files(stream, threshold)
        assert recorder.files == expected
        assert recorder.ends_seen_at == [f.offset + f.size for f in expected]
    assert [f.name for f in parse([stream], 300_000).files] == [
        b"large.bin",
        b"sub/deeper/big-after-small",
    ]
    # The format's own threshold, 256 KiB: the same two.
    assert parse([stream], LARGE_FILE).files == expected_files(stream, 300_000)


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
        recorder = parse(pieces)
        assert recorder.files == expected_files(stream), largest
        assert recorder.starts_seen_at == [f.offset for f in recorder.files]
        assert recorder.ends_seen_at == [f.offset + f.size for f in recorder.files]


def test_a_pax_size_record_overrides_the_ustar_size_field() -> None:
    # Files of 8 GiB and more have their size in a PAX record only.
    info = tarfile.TarInfo("huge")
    info.size = 9 << 30
    header = info.tobuf(tarfile.PAX_FORMAT)
    recorder = Recorder(keep=False)
    sink = TarBoundarySink(recorder)
    sink.write(header)
    zeros = bytes(1 << 20)
    for _ in range(info.size // len(zeros)):
        sink.write(zeros)
    sink.write(bytes(1024))  # the end of the archive
    sink.close()
    assert recorder.files == [FileContent(b"huge", len(header), 9 << 30)]
    assert recorder.ends_seen_at == [len(header) + (9 << 30)]


def test_a_stream_that_is_not_a_tar_archive_is_refused() -> None:
    with pytest.raises(SourceError, match="no valid header at byte 0"):
        parse([b"x" * 512])


def test_a_stream_that_ends_inside_an_entry_is_refused(tmp_path: Path) -> None:
    make_tree(tmp_path)
    stream, _ = tar_of(tmp_path)
    cut = expected_files(stream)[0].offset + 1
    with pytest.raises(SourceError, match="ends inside an entry"):
        parse([stream[:cut]])


Attributed = list[tuple[Chunk, FileContent | None]]


def chunks_of_stream(pieces: list[bytes]) -> Attributed:
    """The chunks of a tar stream fed in ``pieces``, each with its large file."""
    chunks: Attributed = []
    feeder = ChunkFeeder(
        Chunker(SEED, LARGE, between_files=SMALL), lambda c, f: chunks.append((c, f))
    )
    sink = TarBoundarySink(feeder, LARGE.minimum)
    for piece in pieces:
        sink.write(piece)
    sink.close()
    feeder.finish()
    return chunks


def chunks_of(root: Path) -> Attributed:
    chunks: Attributed = []
    feeder = ChunkFeeder(
        Chunker(SEED, LARGE, between_files=SMALL), lambda c, f: chunks.append((c, f))
    )
    write_tree(root, (), TarBoundarySink(feeder, LARGE.minimum))
    feeder.finish()
    return chunks


def file_chunks(chunks: Attributed, name: bytes) -> list[bytes]:
    """The ids of the chunks said to be the content of the large file ``name``."""
    return [chunk_id(ID_KEY, c.data) for c, f in chunks if f is not None and f.name == name]


def test_each_large_file_is_exactly_the_chunks_reported_with_it(tmp_path: Path) -> None:
    make_tree(tmp_path)
    (tmp_path / "sub" / "just-large").write_bytes(random.Random(5).randbytes(LARGE.minimum))
    stream, _ = tar_of(tmp_path)
    chunks = chunks_of_stream([stream])
    assert b"".join(c.data for c, _ in chunks) == stream
    large = expected_files(stream, LARGE.minimum)
    assert len(large) == 4  # large.bin, the 3000-byte file, big-after-small, just-large
    for content in large:
        mine = [c for c, f in chunks if f == content]
        assert mine[0].offset == content.offset
        assert b"".join(c.data for c in mine) == stream[content.offset :][: content.size]
    # Every other chunk lies outside every large file's content.
    for chunk, file in chunks:
        if file is None:
            end = chunk.offset + len(chunk.data)
            assert all(end <= f.offset or chunk.offset >= f.offset + f.size for f in large)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cuts=st.lists(st.integers(0, 1 << 30), max_size=40))
def test_the_chunks_do_not_depend_on_how_the_tar_stream_is_written(cuts: list[int]) -> None:
    stream = _STREAM()
    bounds = sorted({0, len(stream), *(c % len(stream) for c in cuts)})
    pieces = [stream[a:b] for a, b in itertools.pairwise(bounds)]
    whole = chunks_of_stream([stream])
    fed = chunks_of_stream(pieces)
    assert [(c.offset, c.data, f) for c, f in fed] == [(c.offset, c.data, f) for c, f in whole]


def _stream_of_make_tree() -> bytes:
    with tempfile.TemporaryDirectory(prefix="h14cut-") as folder:
        make_tree(Path(folder))
        return tar_of(Path(folder))[0]


_STREAM = functools.cache(_stream_of_make_tree)


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    before=st.lists(st.integers(0, 20_000), max_size=4),
    more_before=st.lists(st.integers(0, 20_000), max_size=3),
    size=st.integers(LARGE.minimum, 60_000),
    after=st.integers(0, 9000),
    seed=st.integers(0, 2**16),
)
def test_a_large_file_gives_the_same_chunks_wherever_it_sits(
    tmp_path: Path, before: list[int], more_before: list[int], size: int, after: int, seed: int
) -> None:
    content = random.Random(seed).randbytes(size)
    found = []
    # The second tree has more entries before the file, and another after it.
    for name, sizes in (("one", before), ("two", [*before, *more_before, 1234])):
        root = Path(tempfile.mkdtemp(prefix=name, dir=tmp_path))
        (root / "d").mkdir()
        for i, other in enumerate(sizes):
            (root / "d" / f"a{i}").write_bytes(random.Random(other + i).randbytes(other))
        (root / "d" / "the-file").write_bytes(content)
        (root / "d" / "z-after").write_bytes(name.encode() * (after + 1))
        found.append(file_chunks(chunks_of(root), b"d/the-file"))

    one, two = found
    assert one and one == two


def test_rewriting_a_small_file_among_many_stores_little(tmp_path: Path) -> None:
    # The format's sizes: 2,000 files of 1 to 20 KB (20 MB) between two large
    # files; one of them rewritten changes a few small chunks, not megabytes.
    rng = random.Random(11)
    (tmp_path / "a-large").write_bytes(rng.randbytes(LARGE_FILE))
    for i in range(2000):
        (tmp_path / f"small-{i:04d}").write_bytes(rng.randbytes(rng.randint(1000, 20_000)))
    (tmp_path / "z-large").write_bytes(rng.randbytes(LARGE_FILE + 1))

    def stored() -> dict[bytes, int]:
        chunks: dict[bytes, int] = {}
        feeder = ChunkFeeder(
            Chunker(SEED, between_files=SMALL_RUN_PARAMS),
            lambda c, f: chunks.setdefault(chunk_id(ID_KEY, c.data), len(c.data)),
        )
        write_tree(tmp_path, (), TarBoundarySink(feeder))
        feeder.finish()
        return chunks

    before = stored()
    (tmp_path / "small-1000").write_bytes(rng.randbytes(15_000))
    after = stored()
    new = sum(size for ident, size in after.items() if ident not in before)
    assert 15_000 < new <= 400_000  # 147 KB; 1 MiB chunks would store 1.3 MB


class KnowsNothing:
    """A KnownFiles (sources.known_files) that knows nothing: the stream is
    read whole, its runs of small entries told to ``stream`` (as a backup does)."""

    min_size = LARGE_FILE
    looks_up_runs = False

    def __init__(self) -> None:
        self.stream: TarBoundarySink | None = None

    def known(self, name: bytes, st: object, /) -> bool:
        return False

    def skip(self, size: int, /) -> None:
        assert self.stream is not None
        self.stream.skip(size)

    def run_starts(self) -> None:
        assert self.stream is not None
        self.stream.run_starts()

    def known_run(self, entries: bytes, /) -> int | None:
        return None

    def skip_run(self, size: int, /) -> None:
        assert self.stream is not None
        self.stream.skip_run(size)

    def run_ends(self, entries: bytes, /) -> None:
        assert self.stream is not None
        self.stream.run_ends(entries)


class KnowsEveryLargeFile(KnowsNothing):
    """A KnownFiles that says every large file is known."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[bytes] = []

    def known(self, name: bytes, st: object, /) -> bool:
        self.asked.append(name)
        return True


def test_skipped_content_gives_the_chunks_and_offsets_reading_it_gives(tmp_path: Path) -> None:
    make_tree(tmp_path)
    # Each chunk with the file it belongs to: its name and its content's offset and size.
    read: list[tuple[int, bytes, FileContent | None]] = []
    by_file: dict[bytes, list[tuple[int, bytes, FileContent | None]]] = {}

    def on_read(chunk: Chunk, content: FileContent | RunStart | None) -> None:
        if isinstance(content, RunStart):
            content = None
        item = (chunk.offset, chunk_id(ID_KEY, chunk.data), content)
        read.append(item)
        if content is not None:
            by_file.setdefault(content.name, []).append(item)

    feeder = ChunkFeeder(Chunker(SEED, LARGE, SMALL), on_read)
    reader = KnowsNothing()
    reader.stream = TarBoundarySink(feeder)
    write_tree(tmp_path, (), reader.stream, reader)
    feeder.finish()

    skipped: list[tuple[int, bytes, FileContent | None]] = []
    known = KnowsEveryLargeFile()
    feeder = ChunkFeeder(
        Chunker(SEED, LARGE, SMALL),
        lambda chunk, content: skipped.append(
            (
                chunk.offset,
                chunk_id(ID_KEY, chunk.data),
                None if isinstance(content, RunStart) else content,
            )
        ),
        lambda content: skipped.extend((o, i, content) for o, i, _c in by_file[content.name]),
    )
    known.stream = TarBoundarySink(feeder)
    write_tree(tmp_path, (), known.stream, known)
    feeder.finish()
    assert sorted(known.asked) == sorted(by_file) == [b"large.bin", b"sub/deeper/big-after-small"]
    assert skipped == read


def test_content_is_skipped_only_where_a_large_file_starts(tmp_path: Path) -> None:
    make_tree(tmp_path)
    stream, _writes = tar_of(tmp_path)
    sink = TarBoundarySink(Recorder())
    with pytest.raises(ValueError, match="no large file's content of 10 bytes starts at 0"):
        sink.skip(10)
    (large,) = [f for f in expected_files(stream) if f.name == b"large.bin"]
    sink.write(stream[: large.offset])
    with pytest.raises(ValueError, match="no large file's content"):
        sink.skip(large.size - 1)  # not the whole content
    chunker = Chunker(SEED, LARGE, SMALL)
    chunker.feed(b"x" * 10)
    with pytest.raises(ValueError, match="only right after a cut"):
        chunker.skip(100)
    feeder = ChunkFeeder(Chunker(SEED, LARGE, SMALL), lambda chunk, content: None)
    feeder.file_starts(large)
    with pytest.raises(ValueError, match="only an announced large file's content"):
        feeder.skip(large)  # no on_known: nobody lists the chunks
