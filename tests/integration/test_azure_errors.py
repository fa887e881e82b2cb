"""How the Azure Files backend fails: each SDK failure becomes one clear sentence.

Everything runs through the unmodified SDK against the test emulator, which
really verifies signatures, so a wrong key is rejected by the server, not
faked. Faults (throttling, cut connections) are injected on the emulator.
"""

from __future__ import annotations

import base64
import logging
import os
import time
import traceback
from collections.abc import Callable, Iterator
from datetime import timedelta
from functools import partial

import pytest

from reconciler.errors import (
    AuthenticationError,
    ObjectExistsError,
    PermissionDeniedError,
    StorageError,
    StorageFullError,
    UnreachableError,
)
from reconciler.storage.azure import (
    AccountKey,
    AzureCredential,
    AzureFilesStorage,
    DefaultCredential,
    SasToken,
)
from reconciler.storage.azure.ranges import READ_ATTEMPTS
from reconciler.storage.base import TEMP_MARKER
from tests.azure_emulator import AzureFilesEmulator
from tests.azure_emulator.faults import RequestInfo

SHARE = "backups"
SMALL_SHARE = "small"
MIB = 1024 * 1024


@pytest.fixture
def emulator() -> Iterator[AzureFilesEmulator]:
    """A private emulator per test: tests stop it, fill it and inject faults."""
    with AzureFilesEmulator() as running:
        running.create_share(SHARE)
        running.create_share(SMALL_SHARE, quota_bytes=MIB)
        yield running


def open_storage(
    emulator: AzureFilesEmulator,
    credential: AzureCredential | None = None,
    *,
    share: str = SHARE,
    retry_total: int = 4,
    sleep: Callable[[float], None] = time.sleep,
) -> AzureFilesStorage:
    credential = credential or AccountKey(emulator.account_key)
    return AzureFilesStorage(
        emulator.account_url, share, "region-west", credential, retry_total=retry_total, sleep=sleep
    )


def other_key() -> str:
    return base64.b64encode(os.urandom(64)).decode()


def full_text(exc: BaseException) -> str:
    """Everything a --debug traceback would print, chained exceptions included."""
    return "".join(traceback.format_exception(exc))


# -- credentials -----------------------------------------------------------------


def test_a_wrong_account_key_is_rejected_by_the_server(emulator: AzureFilesEmulator) -> None:
    key = other_key()
    storage = open_storage(emulator, AccountKey(key))
    with pytest.raises(AuthenticationError) as caught:
        storage.ensure_root()
    assert str(caught.value) == (
        "Azure Files at devstoreaccount1 rejected the credentials (account key / SAS / identity)"
    )
    assert [r.status for r in emulator.requests] == [403]  # the signature really failed
    assert key not in full_text(caught.value)


def test_an_account_key_that_is_not_base64_is_refused_before_any_request(
    emulator: AzureFilesEmulator,
) -> None:
    with pytest.raises(AuthenticationError, match="not valid base64"):
        open_storage(emulator, AccountKey("not a key!"))
    assert emulator.requests == []


def test_a_sas_signed_with_another_key_is_rejected(emulator: AzureFilesEmulator) -> None:
    sas = emulator.account_sas(key=other_key())
    with pytest.raises(AuthenticationError, match="rejected the credentials"):
        open_storage(emulator, SasToken(sas)).ensure_root()


def test_an_expired_sas_is_rejected(emulator: AzureFilesEmulator) -> None:
    sas = emulator.account_sas(expires_in=timedelta(minutes=-1))
    with pytest.raises(AuthenticationError, match="rejected the credentials"):
        open_storage(emulator, SasToken(sas)).read("settings.json")


def test_a_read_only_sas_cannot_write(emulator: AzureFilesEmulator) -> None:
    open_storage(emulator).ensure_root()
    storage = open_storage(emulator, SasToken("?" + emulator.account_sas("rl")))
    assert storage.list_dir("") == []
    with pytest.raises(PermissionDeniedError) as caught:
        storage.write_atomic("settings.json", b"{}")
    assert "AuthorizationPermissionMismatch" in str(caught.value)
    assert str(caught.value).startswith("cannot write settings.json in Azure file share")


def test_a_share_level_sas_works_for_its_share(emulator: AzureFilesEmulator) -> None:
    storage = open_storage(emulator, SasToken(emulator.share_sas(SHARE)))
    storage.write_atomic("a/settings.json", b"{}")
    assert storage.read("a/settings.json") == b"{}"


def test_an_entra_identity_needs_https(emulator: AzureFilesEmulator) -> None:
    with pytest.raises(AuthenticationError, match="needs an https account URL"):
        open_storage(emulator, DefaultCredential())


# -- where the data is -----------------------------------------------------------


def test_a_missing_share_is_named(emulator: AzureFilesEmulator) -> None:
    storage = open_storage(emulator, share="nope")
    for operation in (storage.ensure_root, storage.root_exists, lambda: storage.exists("x")):
        with pytest.raises(UnreachableError) as caught:
            operation()
        assert str(caught.value) == (
            "the storage account devstoreaccount1 has no file share named nope"
        )


def test_a_stopped_server_is_unreachable_quickly(emulator: AzureFilesEmulator) -> None:
    storage = open_storage(emulator)
    storage.write_atomic("settings.json", b"{}")  # a pooled keep-alive connection exists
    emulator.stop()
    started = time.monotonic()
    with pytest.raises(UnreachableError) as caught:
        storage.read("settings.json")
    # Four short retries take under 5 s (the SDK's default policy would take
    # minutes); the rest is room for a busy machine.
    assert time.monotonic() - started < 30
    assert str(caught.value) == (
        f"cannot reach Azure Files at {emulator.account_url} (connection refused)"
    )


def test_once_the_account_proved_unreachable_later_requests_do_not_back_off_again(
    emulator: AzureFilesEmulator,
) -> None:
    # After a backup fails on a dead account, its clean-up and the lock release
    # each make requests: each must not spend another round of retries (~4 s).
    storage = open_storage(emulator)
    storage.write_atomic("settings.json", b"{}")
    emulator.stop()
    with pytest.raises(UnreachableError):
        storage.read("settings.json")
    started = time.monotonic()
    for _ in range(3):
        for operation in (
            lambda: storage.delete_tree("backups"),
            lambda: storage.delete("lock.json"),
        ):
            with pytest.raises(UnreachableError, match="connection refused"):
                operation()
    # Six refused connections take milliseconds; six rounds of backoff take at
    # least 18 s (each at least 3 s), so this leaves a busy machine lots of room.
    assert time.monotonic() - started < 10
    emulator.start()  # the same port: the account is back, and so are the retries
    assert storage.read("settings.json") == b"{}"
    emulator.inject(status=503, times=2)
    assert storage.read("settings.json") == b"{}"


def test_description_names_account_share_and_folder(emulator: AzureFilesEmulator) -> None:
    assert open_storage(emulator).description == (
        "Azure file share devstoreaccount1/backups/region-west"
    )


# -- throttling and broken connections ---------------------------------------------


def test_throttled_twice_then_the_write_succeeds(emulator: AzureFilesEmulator) -> None:
    storage = open_storage(emulator)
    storage.ensure_root()
    fault = emulator.inject(status=503, times=2)
    storage.write_atomic("catalog.json", b"v1")
    assert fault.hits == 2
    assert emulator.files(SHARE) == {"region-west/catalog.json": b"v1"}


def test_sdk_retries_back_off_exponentially_through_the_injected_sleep(
    emulator: AzureFilesEmulator,
) -> None:
    slept: list[float] = []
    storage = open_storage(emulator, retry_total=3, sleep=slept.append)
    storage.ensure_root()
    emulator.inject(status=503, times=None)
    with pytest.raises(UnreachableError):
        storage.write_atomic("catalog.json", b"v1")
    # Three retries, each about twice the one before (0.25 s first, +-20 % jitter).
    assert len(slept) == 3
    for waited, base in zip(slept, (0.25, 0.5, 1.0), strict=True):
        assert 0.8 * base <= waited <= 1.2 * base


def test_throttled_forever_says_so(emulator: AzureFilesEmulator) -> None:
    storage = open_storage(emulator, retry_total=2)
    storage.ensure_root()
    emulator.clear_log()
    fault = emulator.inject(status=503, times=None)
    with pytest.raises(UnreachableError) as caught:
        storage.write_atomic("catalog.json", b"v1")
    # The first attempt and two retries, then one best-effort (unretried) delete
    # of the temporary file.
    assert (emulator.count("PUT"), emulator.count("DELETE"), fault.hits) == (3, 1, 4)
    assert str(caught.value) == (
        "cannot write catalog.json in Azure file share devstoreaccount1/backups/region-west: "
        "Azure Files at devstoreaccount1 throttled the request (HTTP 503 ServerBusy) and "
        "still did after 2 retries; try again later"
    )


def test_a_failing_server_says_so(emulator: AzureFilesEmulator) -> None:
    storage = open_storage(emulator, retry_total=1)
    emulator.inject(status=500, times=None)
    with pytest.raises(UnreachableError, match=r"failed the request \(HTTP 500 InternalError\)"):
        storage.size("catalog.json")


def test_a_download_cut_mid_body_is_retried_and_exact(emulator: AzureFilesEmulator) -> None:
    storage = open_storage(emulator)
    data = os.urandom(9 * MIB)  # three 4 MiB ranges
    storage.write_atomic("backups/b1/data.enc", data)
    emulator.clear_log()
    fault = emulator.inject(method="GET", drop_after=1000, times=2)
    assert storage.read("backups/b1/data.enc") == data
    assert fault.hits == 2
    assert emulator.count("GET") == 3 + 2  # every range once, plus the two cut ones again


def test_a_download_that_keeps_breaking_off_fails_clearly(emulator: AzureFilesEmulator) -> None:
    storage = open_storage(emulator)
    storage.write_atomic("catalog.json", b"x" * 5000)
    fault = emulator.inject(method="GET", drop_after=100, times=None)
    with pytest.raises(UnreachableError) as caught:
        storage.read("catalog.json")
    assert fault.hits == READ_ATTEMPTS
    assert str(caught.value) == (
        "cannot read catalog.json in Azure file share devstoreaccount1/backups/region-west: "
        f"the connection to Azure Files at devstoreaccount1 broke off during each of "
        f"{READ_ATTEMPTS} attempts"
    )


def test_cut_downloads_are_retried_after_waits_that_double(emulator: AzureFilesEmulator) -> None:
    slept: list[float] = []
    storage = open_storage(emulator, sleep=slept.append)
    storage.write_atomic("catalog.json", b"x" * 5000)
    emulator.inject(method="GET", drop_after=100, times=None)
    started = time.monotonic()
    with pytest.raises(UnreachableError):
        storage.read("catalog.json")
    assert slept == [0.25, 0.5, 1.0]  # before each attempt but the first
    assert time.monotonic() - started < 1.5  # the storage itself never slept


def test_a_ranged_read_cut_mid_body_is_retried_after_waits_that_double(
    emulator: AzureFilesEmulator,
) -> None:
    slept: list[float] = []
    storage = open_storage(emulator, sleep=slept.append)
    data = os.urandom(9 * MIB)
    storage.write_atomic("packs/0a.pack", data)
    emulator.clear_log()
    fault = emulator.inject(method="GET", drop_after=1000, times=2)
    assert storage.read_range("packs/0a.pack", MIB + 3, 6 * MIB) == data[MIB + 3 : 7 * MIB + 3]
    assert fault.hits == 2
    assert emulator.count("GET") == 1 + 2  # one Get File, plus the two cut ones again
    assert slept == [0.25, 0.5]


def test_a_ranged_read_that_keeps_breaking_off_fails_clearly(emulator: AzureFilesEmulator) -> None:
    storage = open_storage(emulator, sleep=lambda _: None)
    storage.write_atomic("packs/0a.pack", b"x" * 5000)
    fault = emulator.inject(method="GET", drop_after=100, times=None)
    with pytest.raises(UnreachableError) as caught:
        storage.read_range("packs/0a.pack", 10, 4000)
    assert fault.hits == READ_ATTEMPTS
    assert str(caught.value) == (
        "cannot read packs/0a.pack in Azure file share devstoreaccount1/backups/region-west: "
        f"the connection to Azure Files at devstoreaccount1 broke off during each of "
        f"{READ_ATTEMPTS} attempts"
    )


def test_a_throttled_ranged_read_waits_through_the_storage_sleep(
    emulator: AzureFilesEmulator,
) -> None:
    slept: list[float] = []
    storage = open_storage(emulator, sleep=slept.append)
    storage.write_atomic("packs/0a.pack", b"0123456789")
    emulator.inject(method="GET", status=503, times=2)
    assert storage.read_range("packs/0a.pack", 2, 5) == b"23456"
    assert len(slept) == 2  # the SDK's two backoffs, through the injected sleep


def _rename(request: RequestInfo) -> bool:
    return request.comp == "rename"


def test_a_commit_whose_rename_answer_was_lost_is_not_reported_as_failed(
    emulator: AzureFilesEmulator,
) -> None:
    # The service renamed the file, but the connection dropped before its
    # answer: the SDK sends the rename again, which finds no source any more.
    storage = open_storage(emulator)
    emulator.inject(method="PUT", predicate=_rename, drop_after=0)
    storage.write_atomic("backups/b1/manifest.json", b"{}")
    assert storage.read("backups/b1/manifest.json") == b"{}"
    emulator.inject(method="PUT", predicate=_rename, drop_after=0)
    storage.create_exclusive("lock.json", b"mine")
    assert storage.read("lock.json") == b"mine"
    assert not [k for k in emulator.files(SHARE) if TEMP_MARKER in k]
    # A lock someone else holds is still refused, answer lost or not.
    emulator.inject(method="PUT", predicate=_rename, drop_after=0)
    with pytest.raises(ObjectExistsError):
        storage.create_exclusive("lock.json", b"theirs")
    assert storage.read("lock.json") == b"mine"


def test_an_object_replaced_while_being_read_is_not_mixed_up(
    emulator: AzureFilesEmulator,
) -> None:
    storage = open_storage(emulator)
    storage.write_atomic("catalog.json", b"a" * (5 * MIB))
    with storage.open_read("catalog.json") as stream:
        assert stream.read(10) == b"a" * 10
        storage.write_atomic("catalog.json", b"b" * (5 * MIB))
        with pytest.raises(StorageError, match="it was replaced while being read"):
            stream.read()


# -- quota ---------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["ShareSizeLimitReached", "ShareQuotaExceeded"])
def test_a_full_share_leaves_no_final_key_and_no_temporary_file(
    emulator: AzureFilesEmulator, code: str
) -> None:
    emulator.store.quota_error_code = code
    storage = open_storage(emulator, share=SMALL_SHARE)
    with pytest.raises(StorageFullError) as caught:
        storage.write_atomic("backups/b1/data.enc", os.urandom(2 * MIB))
    assert str(caught.value) == (
        "cannot write backups/b1/data.enc in Azure file share devstoreaccount1/small/region-west: "
        "the file share small is full (quota reached)"
    )
    assert not storage.exists("backups/b1/data.enc")
    assert emulator.files(SMALL_SHARE) == {}


def test_a_stream_that_outgrows_the_quota_is_discarded(emulator: AzureFilesEmulator) -> None:
    emulator.set_quota(SMALL_SHARE, 6 * MIB)
    storage = open_storage(emulator, share=SMALL_SHARE)
    storage.write_atomic("keep.json", b"{}")
    with pytest.raises(StorageFullError), storage.open_write("big.bin") as out:
        for _ in range(8):
            out.write(os.urandom(MIB))
    assert emulator.files(SMALL_SHARE) == {"region-west/keep.json": b"{}"}


# -- secrets and logs ------------------------------------------------------------------


def failure_of(operation: Callable[[], object]) -> StorageError:
    with pytest.raises(StorageError) as caught:
        operation()
    return caught.value


def test_no_secret_appears_in_any_message_or_description(emulator: AzureFilesEmulator) -> None:
    key, sas = emulator.account_key, emulator.account_sas()
    signature = sas.split("sig=")[1]
    credentials: list[AzureCredential] = [AccountKey(key), SasToken(sas)]
    failures: list[StorageError] = []
    for credential in credentials:
        assert key not in repr(credential) and sas not in repr(credential)
        storage = open_storage(emulator, credential, retry_total=0)
        assert key not in storage.description and signature not in storage.description
        no_share = open_storage(emulator, credential, share="nope", retry_total=0)
        failures += [failure_of(partial(storage.read, "a.json")), failure_of(no_share.ensure_root)]
    emulator.stop()
    for credential in credentials:
        storage = open_storage(emulator, credential, retry_total=0)
        unreachable = failure_of(partial(storage.read, "settings.json"))
        # The transport's message holds the request URL, SAS included: not chained.
        assert unreachable.__cause__ is None and unreachable.__suppress_context__
        failures.append(unreachable)
    for failure in failures:
        text = full_text(failure)
        assert key not in text and signature not in text and "sig=" not in text


def test_sdk_logs_stay_silent(
    emulator: AzureFilesEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    storage = open_storage(emulator, retry_total=1)
    storage.write_atomic("catalog.json", b"x" * 5000)
    emulator.inject(status=503, times=None, method="HEAD")
    with pytest.raises(UnreachableError):
        storage.exists("catalog.json")  # a bodiless HEAD error: the SDK warns with a traceback
    emulator.clear_faults()
    emulator.inject(method="GET", drop_after=10)
    storage.read("catalog.json")  # azure-core warns "Incomplete download."
    assert [r.getMessage() for r in caplog.records if r.name.startswith("azure")] == []
