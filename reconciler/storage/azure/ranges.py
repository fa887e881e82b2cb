"""Moving content in ranges: 4 MiB downloads and uploads with bounded memory.

* ``read_range``: one range of any size, as asked, and nothing shorter.
* Streaming download: ranges of 4 MiB, each retried here when its body is cut
  off (the SDK does not retry an interrupted body), and checked against the
  ETag read when the stream was opened, so a replaced object is not mixed up.
* Streaming upload: the writer buffers one range (4 MiB, the largest body Put
  Range accepts) and hands it to an upload function.
"""

from __future__ import annotations

from collections.abc import Callable

from azure.core.exceptions import AzureError, HttpResponseError, ServiceResponseError
from azure.storage.fileshare import ShareFileClient

from reconciler.errors import StorageError, UnreachableError
from reconciler.storage.azure.client import QuickRetry
from reconciler.storage.azure.errors import AzureErrors
from reconciler.storage.plumbing import ChunkingWriter, shorter_than_asked

RANGE_SIZE = 4 * 1024 * 1024
"""Largest body Put Range accepts; also the size of download ranges."""

READ_ATTEMPTS = 4
"""Attempts per download range whose body is cut off mid-stream."""


def range_fetcher(
    client: ShareFileClient,
    etag: str,
    what: str,
    *,
    errors: AzureErrors,
    sleep: Callable[[float], None],
) -> Callable[[int, int], bytes]:
    """A function reading one range of a file of known size, retrying bodies
    cut off mid-stream."""

    def fetch(offset: int, length: int) -> bytes:
        def attempt() -> bytes | None:
            download = client.download_file(offset=offset, length=length)
            data = download.readall()
            if str(download.properties.etag) != etag:
                raise StorageError(f"{what}: it was replaced while being read")
            return data if len(data) == length else None

        return _retried(attempt, what, errors=errors, sleep=sleep)

    return fetch


def read_range(
    client: ShareFileClient,
    offset: int,
    length: int,
    name: str,
    *,
    errors: AzureErrors,
    sleep: Callable[[float], None],
) -> bytes:
    """``length`` bytes from ``offset`` of the file ``name`` (for messages), in
    one Get File (the SDK splits ranges over 32 MiB), retrying bodies cut off
    mid-stream. Raises IntegrityError when the file ends before the range."""
    what = f"cannot read {name}"

    def size() -> int:
        return int(client.get_file_properties().size)

    def attempt() -> bytes | None:
        if not length:
            if offset > size():
                raise shorter_than_asked(name, offset, length, size())
            return b""
        try:
            download = client.download_file(offset=offset, length=length)
        except HttpResponseError as exc:
            if exc.status_code != 416:  # InvalidRange: the range starts past the end
                raise
            raise shorter_than_asked(name, offset, length, size()) from None
        # The SDK rewrites Content-Range to 'bytes START-END/FILE SIZE'; its own
        # download size is wrong for a range ending past the end of the file.
        whole = int(str(download.properties.content_range).rpartition("/")[2])
        if offset + length > whole:
            raise shorter_than_asked(name, offset, length, whole)
        data = download.readall()
        return data if len(data) == length else None

    return _retried(attempt, what, errors=errors, sleep=sleep)


def _retried(
    attempt: Callable[[], bytes | None],
    what: str,
    *,
    errors: AzureErrors,
    sleep: Callable[[float], None],
) -> bytes:
    """What ``attempt`` returns, trying again when it returns None (a short
    body) or the response broke off; other SDK errors are translated."""
    for tries in range(READ_ATTEMPTS):
        if tries:
            sleep(QuickRetry.FIRST_BACKOFF * 2 ** (tries - 1))
        try:
            data = attempt()
        except AzureError as exc:
            if not _interrupted(exc):
                errors.fail(exc, what)
            continue
        if data is not None:
            return data
    raise UnreachableError(
        f"{what}: the connection to Azure Files at {errors.account} broke off "
        f"during each of {READ_ATTEMPTS} attempts"
    )


def _interrupted(exc: AzureError) -> bool:
    """Whether an error is a response cut off mid-body, which is worth a retry.

    The SDK reports it as an HttpResponseError ("Download stream interrupted")
    carrying the successful (206) response, or as a ServiceResponseError."""
    if isinstance(exc, ServiceResponseError):
        return True
    return isinstance(exc, HttpResponseError) and (
        exc.status_code is None or 200 <= exc.status_code < 300
    )


class Ranges:
    """The content of a file of known size, fetched one 4 MiB range at a time
    and handed out in whatever pieces the reader asks for."""

    def __init__(self, size: int, fetch: Callable[[int, int], bytes]) -> None:
        self._size = size
        self._fetch = fetch
        self._position = 0
        self._chunk = b""
        self._chunk_start = 0

    def fill(self, view: memoryview) -> int:
        """Copy the next bytes into ``view``; returns the count, 0 at the end."""
        if self._position >= self._size or not len(view):
            return 0
        offset = self._position - self._chunk_start
        if offset >= len(self._chunk):
            length = min(RANGE_SIZE, self._size - self._position)
            self._chunk = self._fetch(self._position, length)
            self._chunk_start, offset = self._position, 0
        count = min(len(view), len(self._chunk) - offset)
        view[:count] = self._chunk[offset : offset + count]
        self._position += count
        return count


class RangeWriter:
    """A ByteSink that uploads in ranges of at most 4 MiB; holds one range in memory."""

    def __init__(self, upload: Callable[[int, bytes], str | None]) -> None:
        self._upload = upload
        self._chunks = ChunkingWriter(self._send, RANGE_SIZE)
        self._offset = 0
        self.started = False  # a file may exist on the server: discard it on failure
        self.file_id: str | None = None  # the id the service gave the file it created

    def write(self, data: bytes | memoryview, /) -> int:
        return self._chunks.write(data)

    def close(self) -> None:
        """Upload what is buffered; an object never written to is created empty."""
        self._chunks.flush()
        if not self.started:
            self._send(memoryview(b""))

    def _send(self, piece: memoryview) -> None:
        data = bytes(piece)
        self.started = True
        file_id = self._upload(self._offset, data)
        if file_id is not None:
            self.file_id = file_id
        self._offset += len(data)
