"""The file cache in a format 2 backup of a ``files`` source.

Before the tar writer reads a large file it asks ``CachedFiles.known``. A
hit (the same path and stat as the last run saw, and every chunk of it still
stored: reclaiming may have removed some) is used: the file is not read, and
its cached chunk ids and lengths are listed in its place. A miss is read as
always, and the chunks its content was cut into are remembered for the next
run. Either way the new cache (``FileCache.commit``, when the run succeeds)
holds every large file this run saw.

Runs of small entries (a folder's header and the small files and links after
it, up to the next folder or large file) go the same way: ``known_run`` with
the run's description (the tree walker's ``describe`` of each entry) is a hit
when the last run stored a run of that description and each of its chunks is
still stored; a written run's chunks are remembered when its last one is
listed (``run_read``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from reconciler.dedup.boundaries import FileContent, RunStart, SmallRun
from reconciler.dedup.chunker import LARGE_FILE
from reconciler.dedup.file_cache import CachedChunk, FileCache, FileKey
from reconciler.repository.chunkstore import ChunkWriter


@dataclass(frozen=True)
class SourceCache:
    """The run's file cache and the name of the source whose files it looks up."""

    cache: FileCache
    source: str


class CachedFiles:
    """One source's lookups and new entries; its ``known`` answers the tar writer."""

    min_size = LARGE_FILE
    """Smaller files are not whole chunk runs of their own, so they have no entry."""

    def __init__(self, cache: SourceCache, writer: ChunkWriter) -> None:
        self._cache = cache.cache
        self._source = cache.source
        self._writer = writer
        self._hits: dict[bytes, tuple[CachedChunk, ...]] = {}
        self._reading: dict[bytes, tuple[FileKey, list[CachedChunk]]] = {}
        self._run_hit: tuple[int, tuple[CachedChunk, ...]] | None = None
        self._run_chunks: list[CachedChunk] = []  # the written run's, listed so far
        self._run_start: int | None = None  # where its first chunk starts
        self.hits = 0
        self.skipped_bytes = 0
        self.skipped_runs = 0

    @property
    def looks_up_runs(self) -> bool:
        """Whether any run of small entries can be known (the last run's cache has some)."""
        return self._cache.has_runs

    def known_run(self, entries: bytes) -> int | None:
        """The length of the run of small entries ``entries`` describes, when the
        cache has its chunks and each is still stored (``chunks_of_run`` then
        gives them), else None: the run is read, and remembered (``run_read``)."""
        found = self._cache.lookup_run(self._source, entries)
        if found is None:
            return None
        size, chunks = found
        if sum(c.length for c in chunks) != size or any(
            self._writer.stored_length(c.id) is None for c in chunks
        ):
            return None
        self._run_hit = found
        self._cache.remember_run(self._source, entries, size, chunks)
        self.skipped_runs += 1
        return size

    def chunks_of_run(self, run: SmallRun) -> tuple[CachedChunk, ...]:
        """The cached chunks of a skipped run, ``known_run`` having said it is known."""
        hit, self._run_hit = self._run_hit, None
        if hit is None or hit[0] != run.size:
            raise ValueError(f"a run of {run.size} bytes was skipped but not known")
        return hit[1]

    def run_chunk_read(self, run: RunStart, offset: int, chunk: CachedChunk) -> None:
        """One chunk of a written run of small entries, starting at stream ``offset``."""
        if not self._run_chunks:
            self._run_start = offset
        self._run_chunks.append(chunk)

    def run_read(self, run: SmallRun) -> None:
        """A written run ended (its every chunk given to ``run_chunk_read``): remember it."""
        chunks, start = tuple(self._run_chunks), self._run_start
        self._run_chunks, self._run_start = [], None
        if run.size and start == run.offset and sum(c.length for c in chunks) == run.size:
            self._cache.remember_run(self._source, run.entries, run.size, chunks)

    def known(self, name: bytes, st: os.stat_result) -> bool:
        """True when the cache has the file's chunks and each is still stored;
        ``chunks_of`` then gives them. Else the file is read, and its chunks
        (``chunk_read``) remembered."""
        key = FileKey.from_stat(self._source, name, st)
        chunks = self._cache.lookup(key)
        if (
            chunks is not None
            and sum(c.length for c in chunks) == st.st_size
            and all(self._writer.stored_length(c.id) is not None for c in chunks)
        ):
            self._hits[name] = chunks
            self._cache.remember(key, chunks)
            self.hits += 1
            self.skipped_bytes += st.st_size
            return True
        self._reading[name] = (key, [])
        return False

    def chunks_of(self, content: FileContent) -> tuple[CachedChunk, ...]:
        """The cached chunks of a skipped content, ``known`` having said it is known."""
        try:
            return self._hits.pop(content.name)
        except KeyError:
            raise ValueError(f"the content of {content.name!r} was skipped but not known") from None

    def chunk_read(self, content: FileContent, offset: int, chunk: CachedChunk) -> None:
        """One chunk of a file's content, read, starting at stream ``offset``;
        with the content's last chunk the file is remembered."""
        reading = self._reading.get(content.name)
        if reading is None:
            return  # not asked about: nothing to remember it by
        key, chunks = reading
        chunks.append(chunk)
        if offset + chunk.length == content.offset + content.size:
            del self._reading[content.name]
            self._cache.remember(key, tuple(chunks))
