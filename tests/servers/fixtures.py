"""Session fixtures that start test servers (registered in tests/conftest.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.servers.samba import SambaServer, find_smbd

INSTALL_HINT = "apt-get install samba"


def in_ci() -> bool:
    """True in CI (env CI=true), where a server that cannot start fails tests."""
    return os.environ.get("CI", "").lower() == "true"


def samba_skip_reason() -> str | None:
    """Why the Samba tests cannot run here, or None when they can.

    Only outside CI: in CI a missing or broken Samba must fail, not skip."""
    if in_ci():
        return None
    if find_smbd() is None:
        return f"smbd is not installed ({INSTALL_HINT})"
    if os.geteuid() != 0:
        return "the test Samba server needs root (smbd switches to the share user)"
    return None


def start_samba_or_skip(options: dict[str, str] | None = None) -> SambaServer:
    """A started SambaServer (``options``: extra [global] settings); skips
    outside CI when Samba cannot run here.

    Raises pytest's failure (never a skip) when smbd fails to start in CI or
    when it is installed but broken. The caller calls ``cleanup()``."""
    reason = samba_skip_reason()
    if reason is not None:
        pytest.skip(reason)
    server = SambaServer(options=options)
    try:
        server.start()
    except RuntimeError as exc:
        server.cleanup()
        pytest.fail(f"the test Samba server did not start: {exc}", pytrace=False)
    return server


@pytest.fixture(scope="session")
def samba_server() -> Iterator[SambaServer]:
    """One Samba server (shares 'backups' and 'readonly') for the test session."""
    server = start_samba_or_skip()
    yield server
    server.cleanup()
