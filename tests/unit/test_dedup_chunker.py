"""Content-defined chunking of a stream (reconciler.dedup.chunker)."""

from __future__ import annotations

import io
import itertools
import os
import random
import tracemalloc

from hypothesis import given, settings
from hypothesis import strategies as st
from pyfastcdc import FastCDC

from reconciler.dedup.chunk_id import chunk_id
from reconciler.dedup.chunker import (
    MAX_SIZE,
    Chunk,
    Chunker,
    ChunkParams,
    chunk_stream,
)

# Small sizes so that hypothesis' examples hold many chunks; the logic is the same.
SMALL = ChunkParams(average=1024, minimum=256, maximum=4096)
LARGE = ChunkParams(average=4096, minimum=1024, maximum=16384)
SEED = 0x5EED_0F_1D
ID_KEY = bytes(range(32))


def noise(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def run(pieces: list[tuple[bytes, bool]], seed: int = SEED) -> list[Chunk]:
    """Chunk ``pieces`` in order, one set of sizes; a True flag says a file's
    content starts before it and ends after it."""
    chunker = Chunker(seed, SMALL)
    out: list[Chunk] = []
    for data, is_file in pieces:
        if is_file:
            out += chunker.file_starts()
        out += chunker.feed(data)
        if is_file:
            out += chunker.file_ends()
    return out + chunker.finish()


def ids(chunks: list[Chunk]) -> list[bytes]:
    return [chunk_id(ID_KEY, c.data) for c in chunks]


# Sizes drawn as numbers (hypothesis keeps binary() small): streams of up to
# 240 KB, well past the point where the chunker cuts while it is fed.
pieces_strategy = st.lists(
    st.builds(
        lambda size, seed, starts_file: (noise(size, seed), starts_file),
        st.integers(0, 20_000),
        st.integers(0, 2**16),
        st.booleans(),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=150, deadline=None)
@given(pieces=pieces_strategy)
def test_the_chunks_concatenate_to_the_stream_and_their_offsets_are_exact(
    pieces: list[tuple[bytes, bool]],
) -> None:
    chunks = run(pieces)
    stream = b"".join(data for data, _ in pieces)
    assert b"".join(c.data for c in chunks) == stream
    assert [c.offset for c in chunks] == [
        sum(len(c.data) for c in chunks[:i]) for i in range(len(chunks))
    ]
    assert all(0 < len(c.data) <= SMALL.maximum for c in chunks)


@settings(max_examples=100, deadline=None)
@given(
    seed=st.integers(0, 2**32), size=st.integers(0, 60_000), cuts=st.lists(st.integers(0, 60_000))
)
def test_the_chunks_do_not_depend_on_how_the_stream_is_fed(
    seed: int, size: int, cuts: list[int]
) -> None:
    data = noise(size, seed)
    bounds = sorted({0, size, *(c for c in cuts if c < size)})
    fed = run([(data[a:b], False) for a, b in itertools.pairwise(bounds)])
    whole = [
        (c.offset, len(c.data))
        for c in FastCDC(1024, min_size=256, max_size=4096, seed=SEED).cut_buf(data)
    ]
    assert [(c.offset, len(c.data)) for c in fed] == whole
    assert ids(fed) == ids(run([(data, False)]))


def test_the_same_stream_and_key_give_the_same_chunks_and_another_key_others() -> None:
    data = noise(200_000, 1)
    assert ids(run([(data, False)])) == ids(run([(data, False)]))
    assert ids(run([(data, False)], seed=SEED + 1)) != ids(run([(data, False)]))


# A stream of segments: between large files (False) or a large file's content (True).
segments_strategy = st.lists(
    st.tuples(st.integers(0, 30_000), st.integers(0, 2**16), st.booleans()),
    min_size=1,
    max_size=8,
)


def run_segments(
    segments: list[tuple[bytes, bool]], feed_sizes: list[int]
) -> tuple[list[Chunk], list[int]]:
    """Chunk ``segments`` with file_starts/file_ends around each file's content,
    fed in pieces of the sizes in ``feed_sizes`` (cycled); the chunks, and where
    each segment starts in the list of chunks."""
    chunker = Chunker(SEED, LARGE, between_files=SMALL)
    out: list[Chunk] = []
    starts: list[int] = []
    sizes = itertools.cycle(feed_sizes)
    for data, is_file in segments:
        if is_file:
            out += chunker.file_starts()
        starts.append(len(out))
        at = 0
        while at < len(data):
            step = next(sizes)
            out += chunker.feed(data[at : at + step])
            at += step
        if is_file:
            out += chunker.file_ends()
    return out + chunker.finish(), starts


def cuts_alone(data: bytes, params: ChunkParams) -> list[int]:
    """The chunk lengths of ``data`` as a stream of its own."""
    cdc = FastCDC(params.average, min_size=params.minimum, max_size=params.maximum, seed=SEED)
    return [c.length for c in cdc.cut_buf(data)] if data else []


@settings(max_examples=100, deadline=None)
@given(segments=segments_strategy, feed_sizes=st.lists(st.integers(1, 9000), min_size=1))
def test_large_files_and_what_lies_between_are_cut_as_streams_of_their_own(
    segments: list[tuple[int, int, bool]], feed_sizes: list[int]
) -> None:
    data = [(noise(size, seed), is_file) for size, seed, is_file in segments]
    chunks, _ = run_segments(data, feed_sizes)
    # Consecutive "between" segments are one run: nothing separates them.
    runs: list[tuple[bytes, bool]] = []
    for piece, is_file in data:
        if runs and not is_file and not runs[-1][1]:
            runs[-1] = (runs[-1][0] + piece, False)
        else:
            runs.append((piece, is_file))
    expected = [
        n for piece, is_file in runs for n in cuts_alone(piece, LARGE if is_file else SMALL)
    ]
    assert [len(c.data) for c in chunks] == expected
    assert b"".join(c.data for c in chunks) == b"".join(piece for piece, _ in data)


@settings(max_examples=100, deadline=None)
@given(
    file_seed=st.integers(0, 2**32),
    file_size=st.integers(1, 40_000),
    first=st.binary(max_size=9000),
    second=st.binary(max_size=9000),
    suffix=st.binary(max_size=9000),
)
def test_a_large_file_is_the_same_run_of_whole_chunks_wherever_it_sits(
    file_seed: int, file_size: int, first: bytes, second: bytes, suffix: bytes
) -> None:
    content = noise(file_size, file_seed)
    found = []
    for before in (first, second):
        chunks, starts = run_segments([(before, False), (content, True), (suffix, False)], [4096])
        ends = next(
            (i for i, c in enumerate(chunks) if c.offset >= len(before) + file_size), len(chunks)
        )
        found.append(chunks[starts[1] : ends])
    one, two = found
    assert b"".join(c.data for c in one) == content
    assert ids(one) == ids(two)


def test_a_file_boundary_cuts_whatever_is_pending_however_short() -> None:
    header = b"h" * 10
    chunker = Chunker(SEED, LARGE, between_files=SMALL)
    assert chunker.feed(header) == []
    assert chunker.file_starts() == [Chunk(0, header)]
    chunker.feed(b"x" * 5)
    assert chunker.file_ends() == [Chunk(10, b"x" * 5)]
    assert chunker.file_ends() == []  # nothing pending: no empty chunk


def changed_chunks_after_an_insertion(seed: int) -> int:
    rng = random.Random(seed)
    data = noise(300_000, seed)
    at, inserted = rng.randrange(2000), rng.randbytes(rng.randrange(1, 65))
    before = set(ids(run([(data, False)])))
    after = ids(run([(data[:at] + inserted + data[at:], False)]))
    assert len(before) > 100
    return len([i for i in after if i not in before])


def test_inserting_bytes_near_the_start_changes_only_a_few_chunks() -> None:
    # Statistical, over fixed cases: FastCDC usually resynchronises at the next
    # cut point, but in about 1 % of cases only after five to seven chunks.
    changed = [changed_chunks_after_an_insertion(seed) for seed in range(200)]
    assert sum(changed) / len(changed) <= 1.5
    assert max(changed) <= 10


def peak_memory_chunking(size: int) -> int:
    reader = io.BytesIO(os.urandom(size))
    tracemalloc.start()
    try:
        total = sum(len(c.data) for c in chunk_stream(reader, SEED))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == size
    return peak


def test_memory_does_not_grow_with_the_stream() -> None:
    small, large = peak_memory_chunking(24 << 20), peak_memory_chunking(96 << 20)
    assert large < small + 2 * MAX_SIZE, f"peak {large} bytes for 96 MiB, {small} for 24 MiB"
    assert large < 8 * MAX_SIZE


def test_the_format_chunks_average_about_one_mebibyte() -> None:
    data = os.urandom(64 << 20)
    lengths = [len(c.data) for c in chunk_stream(io.BytesIO(data), SEED)]
    average = sum(lengths) / len(lengths)
    assert (1 << 20) * 0.8 <= average <= (1 << 20) * 1.6
    assert max(lengths) <= MAX_SIZE
