"""Building blocks of the deduplicating format (format 2), not yet used by the repository.

``keys`` (the index key and what is derived from it), ``chunk_id`` (keyed
BLAKE3 ids), ``chunker`` (content-defined chunks of a stream, cut at
the start and end of large files), ``pack`` (movable encrypted records in pack objects, with a
trailer the index key reads), ``index`` (sorted runs of the chunk index:
deltas and prefix shards), ``chunk_list`` (a source's chunk ids and lengths,
streamed, under the index key), ``boundaries``
(where large files start and end in the tar stream) and ``file_cache`` (the backup host's
cache of unchanged files' chunks). Nothing here touches storage: every
function takes and returns bytes or byte streams, except the file cache, a
local file.
"""
