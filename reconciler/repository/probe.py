"""Proving that credentials work before recording them: write, read back, delete."""

from __future__ import annotations

import secrets

from reconciler.errors import StorageError
from reconciler.storage.base import Storage
from reconciler.storage.keys import temp_name_for


def probe_write_access(storage: Storage) -> None:
    """Write a small random object, read it back and delete it.

    Raises the backend's StorageError (AuthenticationError, PermissionDeniedError,
    UnreachableError, ...) when any step fails, or StorageError when the object
    reads back differently."""
    # A temporary name: if we die before deleting it, staging.cleanup does.
    key = temp_name_for("credentials-probe")
    payload = secrets.token_bytes(64)
    storage.write_atomic(key, payload)
    try:
        if storage.read(key) != payload:
            raise StorageError(
                f"{storage.description} returned different bytes than were written to {key}"
            )
    finally:
        storage.delete(key)
