"""The emulator behaves like Azure Files where backupctl depends on it."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from azure.core.credentials import AzureNamedKeyCredential, AzureSasCredential
from azure.core.exceptions import HttpResponseError
from azure.storage.fileshare import FileProperties, ShareClient

from tests.azure_emulator import AzureFilesEmulator
from tests.azure_emulator.auth import Request, string_to_sign


@pytest.fixture(scope="module")
def emulator() -> Iterator[AzureFilesEmulator]:
    with AzureFilesEmulator() as running:
        running.create_share("s")
        yield running


def share_client(
    emulator: AzureFilesEmulator, credential: str | AzureSasCredential | None = None
) -> ShareClient:
    key = AzureNamedKeyCredential(emulator.account_name, emulator.account_key)
    return ShareClient(emulator.account_url, "s", credential=credential or key, retry_total=0)


def code_of(error: HttpResponseError) -> str:
    """The error code as a plain str (str() of the SDK's enum is 'StorageErrorCode.X')."""
    code = getattr(error, "error_code", None)
    return str(getattr(code, "value", code))


def test_string_to_sign_follows_the_documented_layout() -> None:
    request = Request(
        method="PUT",
        raw_path="/acct/share/dir%20x/file",
        query={"comp": ["range"], "Timeout": ["30"]},
        headers={
            "content-length": "5",
            "x-ms-version": "2025-11-05",
            "x-ms-date": "Wed, 25 Nov 2026 12:00:00 GMT",
            "x-ms-range": "bytes=0-4",
            "x-ms-write": "update",
        },
        account="acct",
        share="share",
        parts=("dir x", "file"),
    )
    assert string_to_sign(request) == (
        "PUT\n\n\n5\n\n\n\n\n\n\n\n\n"
        "x-ms-date:Wed, 25 Nov 2026 12:00:00 GMT\nx-ms-range:bytes=0-4\n"
        "x-ms-version:2025-11-05\nx-ms-write:update\n"
        "/acct/acct/share/dir%20x/file\ncomp:range\ntimeout:30"
    )


def test_a_rename_needs_the_sas_on_its_source_url(emulator: AzureFilesEmulator) -> None:
    sas = emulator.account_sas()
    as_credential = share_client(emulator, AzureSasCredential(sas)).get_file_client("a")
    as_credential.create_file(1)
    with pytest.raises(HttpResponseError) as caught:
        as_credential.rename_file("b")  # the SDK leaves the SAS off the source header
    assert code_of(caught.value) == "CannotVerifyCopySource"
    share_client(emulator, sas).get_file_client("a").rename_file("b")
    assert "b" in emulator.files("s")


def test_names_are_case_insensitive_and_keep_their_case(emulator: AzureFilesEmulator) -> None:
    client = share_client(emulator)
    client.get_file_client("Case.json").create_file(1)
    client.get_file_client("case.JSON").upload_range(b"x", offset=0, length=1)
    assert emulator.files("s")["Case.json"] == b"x"


def test_listing_pages_follow_next_marker(emulator: AzureFilesEmulator) -> None:
    client = share_client(emulator)
    folder = client.get_directory_client("paged")
    folder.create_directory()
    for n in range(5):
        folder.get_file_client(f"f{n}").create_file(n)
    items = list(folder.list_directories_and_files(results_per_page=2))
    files = [(i.name, i.size) for i in items if isinstance(i, FileProperties)]
    assert len(items) == 5 and files == [(f"f{n}", n) for n in range(5)]
    assert emulator.count("GET", comp="list", path_contains="/paged") == 3


def test_errors_of_head_requests_come_in_the_header_only(emulator: AzureFilesEmulator) -> None:
    with pytest.raises(HttpResponseError) as caught:
        share_client(emulator).get_file_client("missing").get_file_properties()
    assert (caught.value.status_code, code_of(caught.value)) == (404, "ResourceNotFound")


def test_injected_latency_delays_matching_requests(emulator: AzureFilesEmulator) -> None:
    fault = emulator.inject(delay=0.3, method="GET", path_contains="/s")
    started = time.monotonic()
    share_client(emulator).get_share_properties()
    assert time.monotonic() - started >= 0.3 and fault.hits == 1
