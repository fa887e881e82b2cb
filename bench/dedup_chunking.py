"""Throughput of format 2's chunking and chunk ids against zstd alone.

Generates about 500 MB in a temporary file (half log-like text that
compresses about 4:1, half random bytes), then, each pass reading the file
from the page cache in 1 MiB pieces, in this one process:

* baseline: read and zstd-compress (level 3, one thread, as format 1's
  pipeline per core and a pack's records do);
* chunker: read and cut into content-defined chunks;
* chunk ids: keyed BLAKE3 of every chunk (chunks cut beforehand, not timed);
* chunker + ids: both, as a backup does before it knows which chunks are new;
* pack path: chunker + ids + zstd + AES-256-GCM records, everything a backup
  does for new data but writing.

Prints MB/s and each figure as a ratio of the baseline measured in the same
run. ``python -m bench.dedup_chunking [--mb N]``.
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import zstandard

from reconciler.dedup.chunk_id import chunk_id
from reconciler.dedup.chunker import Chunker
from reconciler.dedup.keys import IndexKey
from reconciler.dedup.pack import (
    TARGET_PACK_SIZE,
    ZSTD_LEVEL,
    PackWriter,
    new_pack_id,
    seal_record,
)
from reconciler.streams import CHUNK_SIZE

MB = 1_000_000


class _Discard:
    def write(self, data: bytes, /) -> int:
        return len(data)


def generate(path: Path, total: int, seed: int = 20261205) -> None:
    """Write ``total`` bytes: log-like lines first, then random bytes."""
    rng = random.Random(seed)
    with path.open("wb") as out:
        written = 0
        while written < total // 2:
            raw = rng.randbytes(CHUNK_SIZE // 4)
            # base64 of random words plus fixed fields: text that compresses ~4:1.
            lines = [
                b"2026-12-05T14:%02d:%02d frontend GET /api/v1/items/%s 200 %dms\n"
                % (i % 60, i % 60, base64.b16encode(raw[i : i + 6]), raw[i] % 250)
                for i in range(0, len(raw) - 6, 6)
            ]
            block = b"".join(lines)
            out.write(block)
            written += len(block)
        while written < total:
            block = rng.randbytes(min(CHUNK_SIZE, total - written))
            out.write(block)
            written += len(block)


def pieces(path: Path) -> io.BufferedReader:
    return path.open("rb")


def timed(label: str, work: Callable[[], int]) -> tuple[str, float, int]:
    start = time.perf_counter()
    size = work()
    return label, time.perf_counter() - start, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=500)
    args = parser.parse_args()
    keys = IndexKey.generate().derive()
    data_key = os.urandom(32)
    key_id = os.urandom(16)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "stream.bin"
        generate(path, args.mb * MB)
        size = path.stat().st_size

        def baseline() -> int:
            compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
            out = 0
            with pieces(path) as reader:
                while block := reader.read(CHUNK_SIZE):
                    out += len(compressor.compress(block))
            return out

        def chunks() -> list[bytes]:
            chunker = Chunker(keys.chunker_seed)
            found: list[bytes] = []
            with pieces(path) as reader:
                while block := reader.read(CHUNK_SIZE):
                    found += (c.data for c in chunker.feed(block))
            return found + [c.data for c in chunker.finish()]

        def chunk_only() -> int:
            chunker = Chunker(keys.chunker_seed)
            count = 0
            with pieces(path) as reader:
                while block := reader.read(CHUNK_SIZE):
                    count += len(chunker.feed(block))
            return count + len(chunker.finish())

        cut = chunks()

        def ids_only() -> int:
            return len({chunk_id(keys.chunk_id_key, c) for c in cut})

        def chunk_and_ids() -> int:
            chunker = Chunker(keys.chunker_seed)
            seen: set[bytes] = set()
            with pieces(path) as reader:
                while block := reader.read(CHUNK_SIZE):
                    seen.update(chunk_id(keys.chunk_id_key, c.data) for c in chunker.feed(block))
            seen.update(chunk_id(keys.chunk_id_key, c.data) for c in chunker.finish())
            return len(seen)

        def pack_path() -> int:
            chunker = Chunker(keys.chunker_seed)
            total = 0

            def new_pack() -> PackWriter:
                return PackWriter(_Discard(), new_pack_id(), keys.index_encryption_key)

            def add(writer: PackWriter, data: bytes | memoryview) -> None:
                cid = chunk_id(keys.chunk_id_key, data)
                writer.add_record(cid, seal_record(cid, data, key_id, data_key))

            writer = new_pack()
            with pieces(path) as reader:
                while block := reader.read(CHUNK_SIZE):
                    for c in chunker.feed(block):
                        add(writer, c.data)
                        if writer.size >= TARGET_PACK_SIZE:
                            total += writer.finish()
                            writer = new_pack()
            for c in chunker.finish():
                add(writer, c.data)
            return total + writer.finish()

        results = [
            timed("baseline: read + zstd", baseline),
            timed("chunker", chunk_only),
            timed("chunk ids (keyed BLAKE3)", ids_only),
            timed("chunker + ids", chunk_and_ids),
            timed("chunker + ids + zstd + AES-GCM", pack_path),
        ]
    average = size / len(cut) / (1 << 20)
    print(f"{size / MB:,.0f} MB, {len(cut):,} chunks, average {average:.2f} MiB")
    base = results[0][1]
    for label, seconds, _ in results:
        print(f"{label:34} {size / MB / seconds:8,.0f} MB/s   {base / seconds:5.2f} x baseline")


if __name__ == "__main__":
    main()
