"""What a source function read or wrote, the stream it reads from, and
writing a whole buffer to a file descriptor."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class SourceStats:
    """How much a source function handled.

    ``items`` counts files, folders and links for a tree (one for a database or
    a command) and ``content_bytes`` the bytes of content read or written.
    """

    items: int
    content_bytes: int


def write_all(fd: int, data: memoryview) -> None:
    """Write all of ``data`` to ``fd`` (``os.write`` may write less, as to a pipe)."""
    while data:
        written = os.write(fd, data)
        data = data[written:]
