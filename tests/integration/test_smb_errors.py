"""SmbStorage's errors against a real Samba server: one sentence, no secret."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import textwrap
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import smbclient
from smbprotocol.exceptions import SMBConnectionClosed, SMBOSError
from smbprotocol.header import NtStatus

from reconciler.errors import (
    AuthenticationError,
    ObjectExistsError,
    ObjectNotFoundError,
    PermissionDeniedError,
    StorageError,
    StorageFullError,
    UnreachableError,
)
from reconciler.storage.base import TEMP_MARKER
from reconciler.storage.smb import SmbStorage
from reconciler.storage.smb.paths import parse_smb_path
from tests.servers.fixtures import start_samba_or_skip
from tests.servers.samba import SambaServer

ROOT = Path(__file__).resolve().parents[2]


def _storage(
    server: SambaServer,
    *,
    share: str = "backups",
    folder: str | None = None,
    password: str | None = None,
    username: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> SmbStorage:
    return SmbStorage(
        server.host,
        share,
        folder if folder is not None else f"errors/r-{secrets.token_hex(4)}",
        port=server.port,
        username=username or server.username,
        password=password if password is not None else server.password,
        sleep=sleep,
    )


def _assert_clean(exc: BaseException, *secrets_: str) -> None:
    """One sentence, no SDK wording, no secret."""
    text = str(exc)
    for secret in secrets_:
        assert secret not in text
    for sdk_word in ("SMBOSError", "NtStatus", "smbprotocol", "Traceback", "Errno"):
        assert sdk_word not in text
    assert "\n" not in text


@pytest.fixture(scope="module")
def spare_samba() -> Iterator[SambaServer]:
    """A second server that tests may stop (they restart it when done)."""
    server = start_samba_or_skip()
    yield server
    server.cleanup()


# -- credentials and reachability ---------------------------------------------


def test_wrong_password_is_an_authentication_error(samba_server: SambaServer) -> None:
    wrong = f"wrong-{secrets.token_hex(8)}"
    store = _storage(samba_server, password=wrong)
    with pytest.raises(AuthenticationError) as caught:
        store.ensure_root()
    assert str(caught.value) == (
        "the SMB server at 127.0.0.1 rejected the credentials for backupctl-test"
    )
    _assert_clean(caught.value, wrong, samba_server.password)
    assert wrong not in store.description


def test_wrong_password_never_reuses_another_storages_session(samba_server: SambaServer) -> None:
    good = _storage(samba_server)
    good.ensure_root()
    with pytest.raises(AuthenticationError):
        _storage(samba_server, password="not-the-password").exists("x")
    assert not good.exists("x")


def test_unknown_user_is_an_authentication_error(samba_server: SambaServer) -> None:
    with pytest.raises(AuthenticationError, match=r"credentials for nobody-here$"):
        _storage(samba_server, username="nobody-here").list_dir("")


def test_stopped_server_is_unreachable() -> None:
    server = start_samba_or_skip()
    try:
        server.stop()
        store = _storage(server)
        with pytest.raises(UnreachableError) as caught:
            store.ensure_root()
    finally:
        server.cleanup()
    assert str(caught.value) == (
        f"cannot reach the SMB server at 127.0.0.1:{server.port}: connection refused"
    )
    _assert_clean(caught.value, server.password)


def test_unresolvable_host_is_unreachable() -> None:
    store = SmbStorage("no-such-host.invalid", "backups", "", username="u", password="p")
    with pytest.raises(UnreachableError, match=r"cannot be resolved$"):
        store.root_exists()


def test_missing_share_is_unreachable(samba_server: SambaServer) -> None:
    store = _storage(samba_server, share="no-such-share")
    for attempt in (store.ensure_root, store.root_exists, lambda: store.read("a")):
        with pytest.raises(UnreachableError) as caught:
            attempt()
        assert str(caught.value) == "the SMB server at 127.0.0.1 has no share named no-such-share"
        _assert_clean(caught.value, samba_server.password)


# -- permissions and missing objects ------------------------------------------


def test_read_only_share_refuses_writes(samba_server: SambaServer) -> None:
    (samba_server.share_path("readonly") / "present.json").write_bytes(b"{}")
    store = _storage(samba_server, share="readonly", folder="")
    assert store.read("present.json") == b"{}"
    with pytest.raises(PermissionDeniedError) as caught:
        store.write_atomic("new.json", b"{}")
    assert str(caught.value) == "//127.0.0.1/readonly/new.json is not writable by backupctl-test"
    _assert_clean(caught.value, samba_server.password)
    with pytest.raises(PermissionDeniedError, match="readonly/sub is not writable"):
        _storage(samba_server, share="readonly", folder="sub").ensure_root()
    with pytest.raises(PermissionDeniedError):
        store.delete("present.json")


def test_access_denied_is_mapped_by_nt_status(samba_server: SambaServer) -> None:
    # smbclient reports STATUS_ACCESS_DENIED with errno 0.
    folder = f"locked-{secrets.token_hex(3)}"
    path = samba_server.share_path("backups") / folder
    path.mkdir(mode=0o700)
    store = _storage(samba_server, folder=folder)
    with pytest.raises(PermissionDeniedError, match=f"{folder}/a is not writable by"):
        store.write_atomic("a", b"x")
    with pytest.raises(PermissionDeniedError, match=f"{folder}/a is not readable by"):
        store.read("a")


def test_missing_and_existing_objects(samba_server: SambaServer) -> None:
    store = _storage(samba_server)
    store.ensure_root()
    with pytest.raises(ObjectNotFoundError) as caught:
        store.read("backups/b1/manifest.json")
    assert str(caught.value).endswith("backups/b1/manifest.json: it does not exist")
    with pytest.raises(ObjectNotFoundError):
        store.size("nope")
    store.create_exclusive("lock.json", b"1")
    with pytest.raises(ObjectExistsError, match=r"lock.json already exists$"):
        store.create_exclusive("lock.json", b"2")


def test_root_on_the_share_itself_and_nested_folders(samba_server: SambaServer) -> None:
    nested = f"a-{secrets.token_hex(3)}/b/c"
    store = _storage(samba_server, folder=nested)
    assert not store.root_exists()
    store.ensure_root()
    assert store.root_exists()
    assert (samba_server.share_path("backups") / nested).is_dir()
    at_root = _storage(samba_server, folder="")
    at_root.ensure_root()
    assert nested.split("/")[0] in {e.name for e in at_root.list_dir("")}


# -- description and parsing -------------------------------------------------


def test_description_names_the_share_and_never_the_password(samba_server: SambaServer) -> None:
    store = _storage(samba_server, folder="dir")
    assert store.description == f"SMB share //127.0.0.1/backups/dir (port {samba_server.port})"
    assert samba_server.password not in store.description
    assert samba_server.password not in repr(store)
    default_port = SmbStorage("fs.contoso.com", "B", "x/y", username="u", password="secret-pw")
    assert default_port.description == "SMB share //fs.contoso.com/B/x/y"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("//fs/share", ("fs", "share", "")),
        ("//fs/share/", ("fs", "share", "")),
        (
            "//fs.contoso.com/AzSBackups/region-west",
            ("fs.contoso.com", "AzSBackups", "region-west"),
        ),
        ("\\\\fs\\share\\dir\\sub", ("fs", "share", "dir/sub")),
        ("//127.0.0.1/backups/dir/sub/", ("127.0.0.1", "backups", "dir/sub")),
    ],
)
def test_parse_smb_path(path: str, expected: tuple[str, str, str]) -> None:
    assert parse_smb_path(path) == expected


@pytest.mark.parametrize(
    "path", ["fs/share", "/fs/share", "//fs", "//fs/", "///share", "//fs/share//x", "//fs/s/../x"]
)
def test_parse_smb_path_rejects_malformed_paths(path: str) -> None:
    with pytest.raises(ValueError, match="SMB path"):
        parse_smb_path(path)


# -- lost connections ---------------------------------------------------------


def test_server_stopped_during_a_streaming_write(
    spare_samba: SambaServer, capfd: pytest.CaptureFixture[str]
) -> None:
    store = _storage(spare_samba)
    store.ensure_root()
    block = os.urandom(1 << 20)
    try:
        with (
            pytest.raises(UnreachableError) as caught,
            store.open_write("backups/b1/data.enc") as out,
        ):
            for _ in range(3):
                out.write(block)
            spare_samba.stop()
            for _ in range(3):
                out.write(block)
    finally:
        spare_samba.start()
    assert str(caught.value) == "the SMB server at 127.0.0.1 became unreachable"
    _assert_clean(caught.value, spare_samba.password)
    # The same storage reconnects by itself once the server is back.
    assert not store.exists("backups/b1/data.enc")
    names = [e.name for e in store.list_dir("backups/b1")]
    assert all(TEMP_MARKER in name for name in names)
    store.write_atomic("backups/b1/data.enc", b"ok")
    assert store.read("backups/b1/data.enc") == b"ok"
    assert "Traceback" not in capfd.readouterr().err


def test_server_stopped_during_a_streaming_read(spare_samba: SambaServer) -> None:
    store = _storage(spare_samba)
    store.ensure_root()
    store.write_atomic("big", os.urandom(4 << 20))
    try:
        with (
            pytest.raises(UnreachableError, match=r"became unreachable$"),
            store.open_read("big") as stream,
        ):
            stream.read(1 << 20)
            spare_samba.stop()
            stream.read(3 << 20)
    finally:
        spare_samba.start()
    assert store.size("big") == 4 << 20


def test_idempotent_operations_retry_a_reset_connection(
    samba_server: SambaServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _storage(samba_server)
    store.ensure_root()
    store.write_atomic("x", b"abc")
    real_stat = smbclient.stat
    failures = iter([SMBConnectionClosed("reset"), SMBConnectionClosed("reset")])

    def flaky_stat(path: str, **kwargs: object) -> object:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return real_stat(path, **kwargs)

    monkeypatch.setattr(smbclient, "stat", flaky_stat)
    assert store.size("x") == 3


def test_a_ranged_read_retries_a_reset_connection_after_waits_that_double(
    samba_server: SambaServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    slept: list[float] = []
    store = _storage(samba_server, sleep=slept.append)
    store.ensure_root()
    store.write_atomic("packs/0a.pack", b"0123456789")
    real_open = smbclient.open_file
    failures = iter([SMBConnectionClosed("reset"), SMBConnectionClosed("reset")])

    def flaky_open(path: str, *args: object, **kwargs: object) -> object:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(smbclient, "open_file", flaky_open)
    assert store.read_range("packs/0a.pack", 2, 5) == b"23456"
    assert slept == [0.2, 0.4]


def test_a_ranged_read_of_a_missing_object_is_not_found(samba_server: SambaServer) -> None:
    store = _storage(samba_server)
    store.ensure_root()
    with pytest.raises(ObjectNotFoundError, match=r"packs/0a\.pack") as caught:
        store.read_range("packs/0a.pack", 0, 10)
    _assert_clean(caught.value, samba_server.password)


def test_retries_are_bounded(samba_server: SambaServer, monkeypatch: pytest.MonkeyPatch) -> None:
    store = _storage(samba_server)
    store.ensure_root()
    calls = []

    def always_reset(path: str, **kwargs: object) -> object:
        calls.append(path)
        raise SMBConnectionClosed("reset")

    monkeypatch.setattr(smbclient, "stat", always_reset)
    with pytest.raises(UnreachableError, match=r"became unreachable$"):
        store.exists("x")
    assert len(calls) == 3


def test_lost_connections_are_retried_after_waits_that_double(
    samba_server: SambaServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    slept: list[float] = []
    store = _storage(samba_server, sleep=slept.append)
    store.ensure_root()

    def always_reset(path: str, **kwargs: object) -> object:
        raise SMBConnectionClosed("reset")

    monkeypatch.setattr(smbclient, "stat", always_reset)
    with pytest.raises(UnreachableError):
        store.exists("x")
    assert slept == [0.2, 0.4]


def test_a_file_another_client_holds_open_is_retried_after_waits_that_double(
    samba_server: SambaServer,
) -> None:
    slept: list[float] = []
    folder = f"errors/r-{secrets.token_hex(4)}"
    store = _storage(samba_server, folder=folder, sleep=slept.append)
    store.write_atomic("held", b"x")
    other_client: dict[str, object] = {}  # its own connection: another client
    path = "\\".join(["", "", samba_server.host, "backups", *folder.split("/"), "held"])
    held = smbclient.open_file(
        path,
        "rb",
        share_access=None,  # no sharing: every other open is a sharing violation
        username=samba_server.username,
        password=samba_server.password,
        port=samba_server.port,
        connection_cache=other_client,
    )
    try:
        with pytest.raises(StorageError, match=r"another client has it open$"):
            store.read("held")
    finally:
        held.close()
        smbclient.reset_connection_cache(connection_cache=other_client)
    assert slept == [0.05, 0.1, 0.2, 0.4, 0.8]


def test_disk_full_is_storage_full(
    samba_server: SambaServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A real full disk needs a small mounted file system; the mapping is
    # what matters here.
    store = _storage(samba_server)
    store.ensure_root()

    def full(path: str, *args: object, **kwargs: object) -> object:
        raise SMBOSError(NtStatus.STATUS_DISK_FULL, path)

    monkeypatch.setattr(smbclient, "open_file", full)
    with pytest.raises(StorageFullError, match=r"the SMB share is full$") as caught:
        store.write_atomic("x", b"1")
    _assert_clean(caught.value, samba_server.password)


def test_changed_password_is_an_authentication_error_on_next_logon(
    spare_samba: SambaServer,
) -> None:
    old = spare_samba.password
    store = _storage(spare_samba)
    store.ensure_root()
    new = f"New-{secrets.token_hex(6)}"
    spare_samba.set_password(new)
    try:
        store.close()
        with pytest.raises(AuthenticationError) as caught:
            store.exists("x")
        _assert_clean(caught.value, old, new)
        assert _storage(spare_samba, password=new).root_exists() is False
    finally:
        spare_samba.set_password(old)


def test_interpreter_exit_after_a_lost_connection_prints_nothing(spare_samba: SambaServer) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        from reconciler.storage.smb import SmbStorage
        store = SmbStorage({spare_samba.host!r}, "backups", "exit-test",
                           port={spare_samba.port}, username={spare_samba.username!r},
                           password=sys.stdin.readline().strip())
        store.write_atomic("a", b"1")
        print("ready", flush=True)
        sys.stdin.readline()
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        child.stdin.write(spare_samba.password + "\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "ready"
        spare_samba.stop()
        _, err = child.communicate("go\n", timeout=60)
    finally:
        child.kill()
        spare_samba.start()
    assert child.returncode == 0
    assert err == ""


def test_errors_are_storage_errors_with_a_cause(samba_server: SambaServer) -> None:
    store = _storage(samba_server, password="bad")
    with pytest.raises(StorageError) as caught:
        store.ensure_root()
    # The SDK exception stays available for --debug, never in the message.
    assert caught.value.__cause__ is not None


# -- encryption ---------------------------------------------------------------


def _session_encrypted(store: SmbStorage) -> bool:
    # White-box: the SDK session of the storage's own connection cache.
    (connection,) = store._session.cache.values()
    return all(s.encrypt_data for s in connection.session_table.values())


def test_encryption_is_used_when_the_server_supports_it_without_demanding() -> None:
    server = start_samba_or_skip({"server smb encrypt": "if_required"})
    try:
        store = _storage(server)
        store.write_atomic("a", b"1")
        assert _session_encrypted(store)
        assert store.read("a") == b"1"
    finally:
        server.cleanup()


def test_required_encryption_refuses_a_server_that_cannot_encrypt() -> None:
    server = start_samba_or_skip({"server smb encrypt": "off"})
    try:
        plain = _storage(server)
        plain.write_atomic("a", b"1")
        assert not _session_encrypted(plain)
        strict = SmbStorage(
            server.host,
            "backups",
            "x",
            port=server.port,
            username=server.username,
            password=server.password,
            require_encryption=True,
        )
        with pytest.raises(StorageError) as caught:
            strict.exists("a")
    finally:
        server.cleanup()
    assert str(caught.value) == (
        "the SMB server at 127.0.0.1 does not support SMB 3 encryption, "
        f"which SMB share //127.0.0.1/backups/x (port {server.port}) requires"
    )


# -- streaming ----------------------------------------------------------------


def test_memory_does_not_grow_with_object_size(samba_server: SambaServer) -> None:
    store = _storage(samba_server)
    store.ensure_root()
    block = os.urandom(256 << 10)
    tracemalloc.start()
    try:
        with store.open_write("big") as out:
            for _ in range(256):  # 64 MiB
                out.write(block)
        write_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        total = 0
        with store.open_read("big") as stream:
            while chunk := stream.read(3 << 20):
                total += len(chunk)
        read_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert total == 64 << 20
    # About 8 MiB (1 MiB chunks, copied by signing/encryption) and 13 MiB
    # (the caller's 3 MiB reads) whatever the object size.
    assert write_peak < 16 << 20
    assert read_peak < 24 << 20
