"""Resolving secret references to values, at the last moment.

A value is held in a ``Secret`` (or, for the index key, ``IndexKeyBytes``),
whose repr never shows it, so that a stray log line or traceback cannot print
it."""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from reconciler.dedup.keys import IndexKey
from reconciler.errors import ConfigError
from reconciler.spec.model import (
    AzureFileShareLocation,
    BackupConfiguration,
    SecretRef,
    SmbLocation,
)


@dataclass(frozen=True)
class Secret:
    ref: SecretRef
    value: str = field(repr=False)

    def __str__(self) -> str:
        return f"<secret from {self.ref.describe()}>"


def resolve_secret(ref: SecretRef, environ: Mapping[str, str] | None = None) -> Secret:
    """The secret ``ref`` points to.

    Raises ConfigError naming the field and the variable or file when it is unset,
    missing, unreadable or empty."""
    env = os.environ if environ is None else environ
    where = f"{ref.origin}: {ref.field}" if ref.origin else ref.field
    if ref.env is not None:
        value = env.get(ref.env)
        if value is None:
            raise ConfigError(f"{where}: the environment variable {ref.env} is not set")
    else:
        assert ref.file is not None
        try:
            # One trailing newline is how editors and `echo` write files, not part of
            # the secret; anything more is kept, as written.
            value = ref.file.read_text(encoding="utf-8").removesuffix("\n").removesuffix("\r")
        except FileNotFoundError:
            raise ConfigError(f"{where}: the secret file {ref.file} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            reason = (
                exc.strerror.lower() if isinstance(exc, OSError) and exc.strerror else "unreadable"
            )
            raise ConfigError(
                f"{where}: cannot read the secret file {ref.file} ({reason})"
            ) from None
    if not value:
        raise ConfigError(f"{where}: the {ref.describe()} is empty")
    return Secret(ref, value)


INDEX_KEY_BYTES = 32
"""The length of an index key; ``reconciler.dedup.keys`` holds the same rule,
which spec, its sibling layer, may not import (a test keeps the two agreeing)."""


@dataclass(frozen=True)
class IndexKeyBytes:
    """The index key spec.encryption.indexKey points to, decoded."""

    ref: SecretRef
    secret: bytes = field(repr=False)

    def __str__(self) -> str:
        return f"<index key from {self.ref.describe()}>"


def resolve_index_key(ref: SecretRef, environ: Mapping[str, str] | None = None) -> IndexKeyBytes:
    """The 32 bytes of the index key ``ref`` points to.

    Raises ConfigError naming the configuration file, the field and the
    variable or file (never the value) when it does not resolve (see
    ``resolve_secret``) or is not the base64 text of 32 bytes."""
    text = resolve_secret(ref, environ).value
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != INDEX_KEY_BYTES:
        where = f"{ref.origin}: {ref.field}" if ref.origin else ref.field
        raise ConfigError(
            f"{where}: the {ref.describe()} does not hold an index key, which is the base64"
            f" text of {INDEX_KEY_BYTES} random bytes"
            " (make one with `backupctl keys create --index-key FILE`)"
        )
    return IndexKeyBytes(ref, raw)


def secret_problems(
    config: BackupConfiguration, environ: Mapping[str, str] | None = None
) -> list[str]:
    """Why each secret reference of ``config`` does not resolve (or, for the
    index key, does not hold a key), one sentence each; empty when all do."""
    problems: list[str] = []
    index_key = config.encryption.index_key
    for ref in secret_refs(config):
        try:
            if ref is index_key:
                resolve_index_key(ref, environ)
            else:
                resolve_secret(ref, environ)
        except ConfigError as exc:
            problems.append(str(exc))
    return problems


def secret_refs(config: BackupConfiguration) -> list[SecretRef]:
    """Every secret reference in ``config``, in the order they are written."""
    found: list[SecretRef] = []
    for location in (config.storage, config.migration_from):
        if isinstance(location, SmbLocation):
            found.append(location.password)
        elif isinstance(location, AzureFileShareLocation):
            found.extend(v for v in vars(location.auth).values() if isinstance(v, SecretRef))
    if config.encryption.index_key is not None:
        found.append(config.encryption.index_key)
    found.extend(k.passphrase for k in config.encryption.previous_keys if k.passphrase)
    return found


def environment_without_secrets(
    config: BackupConfiguration, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment for a source's command: ours, minus every variable the
    configuration reads a secret from, so a dump command never sees the
    storage password."""
    env = dict(os.environ if environ is None else environ)
    for ref in secret_refs(config):
        if ref.env is not None:
            env.pop(ref.env, None)
    return env


def configured_index_key(
    config: BackupConfiguration, environ: Mapping[str, str] | None = None
) -> IndexKey | None:
    """spec.encryption.indexKey resolved to the key, None when it is not configured.

    Raises ConfigError (see ``resolve_index_key``)."""
    ref = config.encryption.index_key
    return None if ref is None else IndexKey(resolve_index_key(ref, environ).secret)
