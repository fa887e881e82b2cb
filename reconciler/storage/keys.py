"""Validation of storage keys, shared by every backend."""

from __future__ import annotations

import secrets

from reconciler.storage.base import TEMP_MARKER


def check_key(key: str) -> list[str]:
    """Split a relative storage key into its parts.

    Raises ValueError for keys that could escape the repository folder; such a
    key is a programming error, never user input."""
    if key in ("", "."):
        return []
    parts = key.split("/")
    if key.startswith("/") or any(p in ("", ".", "..") or "\\" in p for p in parts):
        raise ValueError(f"invalid storage key {key!r}")
    return parts


def temp_name_for(name: str) -> str:
    """A unique temporary name next to ``name``, recognisable by TEMP_MARKER."""
    return f"{name}{TEMP_MARKER}{secrets.token_hex(6)}"
