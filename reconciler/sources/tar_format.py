"""What the archive writer and reader of the ``files`` source agree on.

The archive is a POSIX PAX tar stream; see ``tree_walk`` for what it holds,
``tar_writer`` for how its headers are made and ``tar_reader`` for how they
are read back and checked.
"""

from __future__ import annotations

import tarfile

BLOCK = tarfile.BLOCKSIZE
RECORD = tarfile.RECORDSIZE
NS_PER_SECOND = 1_000_000_000
REGULAR_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE)
"""The type flags of a regular file (old writers use the last two)."""

SMALL_FILE = 256 * 1024
"""Files below this size are read whole and written with their headers at
once; a restore hands them whole to the small-file writers."""
