"""The file cache in a format 2 backup of a ``files`` source.

Before the tar writer reads a large file it asks ``CachedFiles.known``. A
hit (the same path and stat as the last run saw, and every chunk of it still
stored: reclaiming may have removed some) is used: the file is not read, and
its cached chunk ids and lengths are listed in its place. A miss is read as
always, and the chunks its content was cut into are remembered for the next
run. Either way the new cache (``FileCache.commit``, when the run succeeds)
holds every large file this run saw.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from reconciler.dedup.boundaries import FileContent
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
        self.hits = 0
        self.skipped_bytes = 0

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
