"""Reading the data a backup holds, and restoring it.

Each kind of source (``files``, ``sqlite``, ``command``) has low-level functions
that take plain values (paths, argv tuples, streams) rather than configuration
objects: ``tree_walk``, ``tree_restore`` and ``tar_reader`` (with
``tar_writer``, ``tar_format`` and ``small_files`` below them) for ``files``,
``sqlite`` and ``command`` for the others. ``kind`` puts each kind behind one
interface, ``SourceKind``, which is what backing up, restoring and verifying
call. The backup side writes a byte stream to ``out`` (anything with
``write(bytes)``); the restore side reads one from ``stream`` (anything with
``read(n)``). Nothing is ever held whole in memory: data moves in chunks of
``CHUNK_SIZE`` bytes. Every function returns a ``SourceStats``.
"""
