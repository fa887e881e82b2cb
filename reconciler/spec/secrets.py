"""Resolving secret references to values, at the last moment.

A value is held in a ``Secret``, whose repr never shows it, so that a stray log
line or traceback cannot print it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

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


def secret_refs(config: BackupConfiguration) -> list[SecretRef]:
    """Every secret reference in ``config``, in the order they are written."""
    found: list[SecretRef] = []
    for location in (config.storage, config.migration_from):
        if isinstance(location, SmbLocation):
            found.append(location.password)
        elif isinstance(location, AzureFileShareLocation):
            found.extend(v for v in vars(location.auth).values() if isinstance(v, SecretRef))
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
