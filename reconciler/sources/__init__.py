"""Reading the data a backup holds, and restoring it.

Each kind of source (``files``, ``sqlite``, ``command``) has low-level functions
that take plain values (paths, argv tuples, streams) rather than configuration
objects. The backup side writes a byte stream to ``out`` (anything with
``write(bytes)``); the restore side reads one from ``stream`` (anything with
``read(n)``). Nothing is ever held whole in memory: data moves in chunks of
``CHUNK_SIZE`` bytes. Every function returns a ``SourceStats``.
"""
