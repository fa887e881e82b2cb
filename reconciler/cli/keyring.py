"""The key options ``restore`` and ``verify`` share: --key, --key-dir, --key-passphrase-env."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from reconciler.cli.common import fail
from reconciler.crypto.keyring import KeyRing, load_key_ring

F = TypeVar("F", bound=Callable[..., Any])


def key_options(func: F) -> F:
    """Add --key (repeatable), --key-dir (repeatable) and --key-passphrase-env to a command."""
    func = click.option(
        "--key-passphrase-env",
        metavar="VAR",
        help="Environment variable holding the passphrase of encrypted keys.",
    )(func)
    func = click.option(
        "--key-dir",
        "key_dirs",
        multiple=True,
        type=click.Path(path_type=Path),
        metavar="DIR",
        help="A folder of private keys (*.pem, *.key, *.der); the right one is picked per backup.",
    )(func)
    return click.option(
        "--key",
        "key_paths",
        multiple=True,
        type=click.Path(path_type=Path),
        metavar="KEYFILE",
        help="A private key (PEM or DER); repeat to offer several.",
    )(func)


def key_ring_from_options(
    key_paths: tuple[Path, ...], key_dirs: tuple[Path, ...], passphrase_env: str | None
) -> KeyRing | None:
    """Return the ring the options describe, or None when no key was given.

    Exits 1 with one sentence when the passphrase variable is unset; raises
    CryptoError (see load_key_ring) when the keys cannot be loaded."""
    if not key_paths and not key_dirs:
        if passphrase_env:
            fail("--key-passphrase-env needs a key: give --key KEYFILE or --key-dir DIR")
        return None
    passphrase: bytes | None = None
    if passphrase_env:
        value = os.environ.get(passphrase_env)
        if value is None:
            fail(f"--key-passphrase-env: the environment variable {passphrase_env} is not set")
        passphrase = value.encode()
    return load_key_ring(key_paths, key_dirs, passphrase)
