"""Azure Files storage: a repository folder in an Azure file share, over HTTPS REST.

Built on ``azure-storage-file-share``. One ``ShareClient`` per storage object,
with its own short retry policy; directory and file clients are derived from
it (``get_directory_client``/``get_file_client``), never parsed from URLs,
because the SDK misreads emulator-style URLs (``http://127.0.0.1:PORT/ACCOUNT``).

How the protocol's guarantees are met:

* Atomic commit: an object is uploaded under a temporary name next to its key
  (``temp_name_for``) and then renamed over the key with Rename File
  (``overwrite=True``), a single server-side operation.
* Streaming upload with bounded memory: Azure files have a fixed size, set at
  creation, and Put Range writes at most 4 MiB. The writer buffers one range
  (4 MiB); the first full range (or the close of the writer) creates the file
  with the size known so far, and every later range first grows the file with
  Set File Properties, then uploads. Small objects therefore cost Create File,
  Put Range and Rename File; large ones one extra resize per 4 MiB.
* ``create_exclusive``: the content is written to a temporary file, then
  renamed onto the key with ``overwrite=False``: the service refuses the rename
  when the key exists (ResourceAlreadyExists), atomically with respect to every
  other client, and the object never appears partially written.
* Streaming download: ranges of 4 MiB, each retried here when its body is cut
  off (the SDK does not retry an interrupted body), and checked against the
  ETag read when the stream was opened, so a replaced object is not mixed up.

Errors of the SDK are translated at this boundary into ``reconciler.errors``
sentences that never contain an account key, a SAS or SDK output.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import logging
import random
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO, NoReturn
from urllib.parse import urlsplit

from azure.core.credentials import AzureNamedKeyCredential, TokenCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.fileshare import (
    DirectoryProperties,
    ExponentialRetry,
    ShareClient,
    ShareFileClient,
)

from reconciler.errors import (
    AuthenticationError,
    ObjectExistsError,
    ObjectNotFoundError,
    PermissionDeniedError,
    StorageError,
    StorageFullError,
    UnreachableError,
)
from reconciler.storage.base import Entry, parent_of
from reconciler.storage.keys import check_key, temp_name_for
from reconciler.storage.locations import AccountKey as AccountKey
from reconciler.storage.locations import AzureCredential as AzureCredential
from reconciler.storage.locations import ClientSecret as ClientSecret
from reconciler.storage.locations import DefaultCredential as DefaultCredential
from reconciler.storage.locations import SasToken as SasToken
from reconciler.storage.plumbing import (
    ChunkingWriter,
    buffered_reader,
    remove_tree,
    staged,
    write_whole,
)
from reconciler.streams import ByteSink

RANGE_SIZE = 4 * 1024 * 1024
"""Largest body Put Range accepts; also the size of download ranges."""

READ_ATTEMPTS = 4
"""Attempts per download range whose body is cut off mid-stream."""

CONNECT_TIMEOUT_SECONDS = 10

_MISSING = frozenset({"ResourceNotFound", "ParentNotFound"})
_FULL = frozenset({"ShareSizeLimitReached", "ShareQuotaExceeded"})
_THROTTLED = frozenset({"ServerBusy", "InternalError", "OperationTimedOut"})
_REJECTED = frozenset(
    {"AuthenticationFailed", "NoAuthenticationInformation", "InvalidAuthenticationInfo"}
)
_FORBIDDEN = frozenset(
    {
        "AuthorizationFailure",
        "AuthorizationPermissionMismatch",
        "AuthorizationResourceTypeMismatch",
        "AuthorizationServiceMismatch",
        "AuthorizationProtocolMismatch",
        "AuthorizationSourceIPMismatch",
        "InsufficientAccountPermissions",
        "CannotVerifyCopySource",
        "ShareDisabled",
        "ReadOnlyAttribute",
    }
)


_SdkCredential = str | AzureNamedKeyCredential | TokenCredential


# -- SDK configuration -------------------------------------------------------------


def _quiet_sdk_loggers() -> None:
    """Keep SDK logs out of user output: they never reach a user, whatever the level.

    Below ERROR the SDK logs request URLs and headers (the HTTP logging policy,
    at INFO) and warnings that Python prints even with logging unconfigured,
    some with a traceback: the failsafe XML parse of a bodiless HEAD error,
    "Incomplete download." and each failed credential of a credential chain.
    The errors raised here already say what went wrong; a debug mode of the
    CLI may lower these levels again."""
    logging.getLogger("azure").setLevel(logging.ERROR)
    logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.ERROR)


_quiet_sdk_loggers()


class _QuickRetry(ExponentialRetry):
    """Exponential backoff in fractions of a second for an interactive tool.

    The SDK default waits about 15 s per retry. Here retry n waits about
    0.25 * 2**(n-1) s (0.25, 0.5, 1, 2 ... with +-20 % jitter), so four retries
    take under 5 s. Each client needs its own instance: azure-core links the
    policy objects of a pipeline in place, and a policy shared by two clients
    would send one client's requests through the other's signing policy."""

    FIRST_BACKOFF = 0.25

    def __init__(self, total: int, sleep: Callable[[float], None]) -> None:
        super().__init__(
            retry_total=total, retry_connect=total, retry_read=total, retry_status=total
        )
        self._sleep = sleep
        # True after a request failed to connect through every retry, until a
        # request gets through again. Meanwhile requests try to connect once:
        # after a backup failed on a dead account, its clean-up and the lock
        # release would otherwise each spend another round of backoff (about
        # 4 s each here, about a minute each with connection timeouts).
        self.unreachable = False

    def configure_retries(self, request: Any) -> dict[str, Any]:
        settings: dict[str, Any] = super().configure_retries(request)
        if self.unreachable:
            settings["connect"] = 0  # the first failed connection exhausts it
        return settings

    def send(self, request: Any) -> Any:
        try:
            response = super().send(request)  # type: ignore[no-untyped-call]
        except ServiceRequestError:
            self.unreachable = True
            raise
        self.unreachable = False
        return response

    def get_backoff_time(self, settings: dict[str, Any]) -> float:
        base = self.FIRST_BACKOFF * 2 ** max(0, int(settings["count"]) - 1)
        return random.uniform(0.8 * base, 1.2 * base)

    def sleep(self, settings: dict[str, Any], transport: Any) -> None:
        """Wait the backoff with the storage's sleep (the transport's is time.sleep)."""
        backoff = self.get_backoff_time(settings)
        if backoff > 0:
            self._sleep(backoff)


def _account_name(account_url: str) -> str:
    """The account name from an account URL.

    ``https://ACCOUNT.file.core.windows.net`` (or any ``ACCOUNT.<domain>``, e.g.
    Azure Stack Hub), or the first path segment for emulator URLs on 127.0.0.1
    or localhost, the only hosts for which the SDK reads it from the path."""
    url = urlsplit(account_url)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise StorageError(
            f"the Azure Files account URL {_public(account_url)} is not an https URL"
        )
    if url.hostname in ("127.0.0.1", "localhost"):
        return url.path.strip("/").split("/")[0]
    return url.hostname.split(".")[0]


def _directory_parts(directory: str) -> list[str]:
    """The parts of the repository directory inside the share ('' is the share root)."""
    try:
        return check_key(directory.strip("/"))
    except ValueError:
        raise StorageError(
            f"the Azure Files directory {directory!r} is not a plain '/'-separated path"
        ) from None


def _public(url: str) -> str:
    """A URL without its query: what a message may show (a SAS lives in the query)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}".rstrip("/")


def _error_code(exc: HttpResponseError) -> str:
    """The service's error code as a plain string.

    The SDK gives a ``StorageErrorCode`` enum member for known codes and a str
    for others; ``str()`` of the enum is 'StorageErrorCode.X', so take .value."""
    code: Any = getattr(exc, "error_code", None)  # set by the storage SDK, not azure-core
    return str(getattr(code, "value", code) or "")


# -- the storage -------------------------------------------------------------------


class AzureFilesStorage:
    """A repository folder ``<share>/<directory>`` in an Azure file share."""

    def __init__(
        self,
        account_url: str,
        share: str,
        directory: str,
        credential: AzureCredential,
        *,
        retry_total: int = 4,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """``retry_total`` bounds the SDK's retries of a request; ``sleep`` waits
        between any two tries (tests pass a recording one)."""
        self._url = _public(account_url)
        self._account = _account_name(account_url)
        self._share_name = share
        self._root = _directory_parts(directory)
        self._retry_total = retry_total
        self._sleep = sleep
        self._share = self._make_client(account_url, credential)

    def _make_client(self, account_url: str, credential: AzureCredential) -> ShareClient:
        sdk_credential, options = self._sdk_credential(credential)
        try:
            return ShareClient(
                account_url,
                self._share_name,
                credential=sdk_credential,
                retry_policy=_QuickRetry(self._retry_total, self._sleep),
                connection_timeout=CONNECT_TIMEOUT_SECONDS,
                **options,
            )
        except ValueError as exc:
            if isinstance(sdk_credential, str | AzureNamedKeyCredential):
                raise StorageError(f"cannot use the Azure Files account URL {self._url}") from exc
            # The SDK refuses bearer tokens over plain http.
            raise AuthenticationError(
                f"cannot use the credentials for Azure Files at {self._url}: an Entra ID "
                "identity needs an https account URL"
            ) from exc

    def _sdk_credential(self, credential: AzureCredential) -> tuple[_SdkCredential, dict[str, Any]]:
        """The SDK credential, and client options it needs (token intent for tokens)."""
        if isinstance(credential, AccountKey):
            try:
                base64.b64decode(credential.key, validate=True)
            except (binascii.Error, ValueError):
                raise AuthenticationError(
                    f"the account key for Azure Files at {self._account} is not valid base64"
                ) from None
            return AzureNamedKeyCredential(self._account, credential.key), {}
        if isinstance(credential, SasToken):
            # A SAS passed as a string reaches the rename source URL too;
            # AzureSasCredential does not, and renames then fail.
            return credential.token.strip().lstrip("?"), {}
        from azure.identity import ClientSecretCredential, DefaultAzureCredential

        token: TokenCredential
        if isinstance(credential, ClientSecret):
            token = ClientSecretCredential(
                credential.tenant_id, credential.client_id, credential.secret
            )
        else:
            token = DefaultAzureCredential()
        # Azure Files refuses OAuth data-plane requests without a declared intent.
        return token, {"token_intent": "backup"}

    # -- paths and messages ----------------------------------------------------

    @property
    def description(self) -> str:
        where = "/".join([self._account, self._share_name, *self._root])
        return f"Azure file share {where}"

    def _path(self, key: str) -> str:
        """The path inside the share of a key."""
        return "/".join([*self._root, *check_key(key)])

    def _where(self, key: str) -> str:
        return f"{key or 'the repository folder'} in {self.description}"

    def _file(self, path: str) -> ShareFileClient:
        return self._share.get_file_client(path)

    # -- error translation -------------------------------------------------------

    @contextmanager
    def _boundary(self, what: str) -> Iterator[None]:
        """Translate SDK errors raised inside the block; ``what`` starts the message."""
        try:
            yield
        except AzureError as exc:
            self._fail(exc, what)

    def _fail(self, exc: AzureError, what: str) -> NoReturn:
        # Network errors carry the request URL, SAS included, in their text:
        # do not chain them, so not even a --debug traceback shows it.
        network = isinstance(exc, ServiceRequestError | ServiceResponseError)
        raise self._translate(exc, what) from (None if network else exc)

    def _translate(self, exc: AzureError, what: str) -> StorageError:
        """The most specific StorageError for an SDK error, as one sentence."""
        if isinstance(exc, ServiceRequestError):
            return UnreachableError(
                f"cannot reach Azure Files at {self._url}{_network_reason(exc)}"
            )
        if isinstance(exc, ServiceResponseError):
            return UnreachableError(
                f"{what}: the connection to Azure Files at {self._url} kept breaking off"
            )
        if not isinstance(exc, HttpResponseError) or exc.status_code is None:
            if isinstance(exc, ClientAuthenticationError):
                return AuthenticationError(
                    f"no Entra ID token could be obtained for Azure Files at {self._account} "
                    "(the identity is missing or was rejected)"
                )
            return StorageError(f"{what}: the Azure SDK failed ({type(exc).__name__})")
        return self._translate_response(exc, what)

    def _translate_response(self, exc: HttpResponseError, what: str) -> StorageError:
        code, status = _error_code(exc), exc.status_code
        if code in _REJECTED or status == 401:
            return AuthenticationError(
                f"Azure Files at {self._account} rejected the credentials "
                "(account key / SAS / identity)"
            )
        if code in _FORBIDDEN or status == 403:
            return PermissionDeniedError(
                f"{what}: the credentials for Azure Files at {self._account} do not allow it "
                f"({code or 'HTTP 403'})"
            )
        if code == "ShareNotFound":
            return UnreachableError(
                f"the storage account {self._account} has no file share named {self._share_name}"
            )
        if code in _MISSING:
            return ObjectNotFoundError(f"{what}: it does not exist")
        if code == "ResourceAlreadyExists":
            return ObjectExistsError(f"{what}: it already exists")
        if code in _FULL:
            return StorageFullError(
                f"{what}: the file share {self._share_name} is full (quota reached)"
            )
        if code in _THROTTLED or (status is not None and status >= 500):
            busy = status == 503 or code == "ServerBusy"
            state = "throttled the request" if busy else "failed the request"
            return UnreachableError(
                f"{what}: Azure Files at {self._account} {state} (HTTP {status} {code}) "
                f"and still did after {self._retry_total} retries; try again later"
            )
        return StorageError(f"{what}: Azure Files answered HTTP {status} {code}".rstrip())

    def _is_missing(self, exc: AzureError) -> bool:
        return isinstance(exc, HttpResponseError) and _error_code(exc) in _MISSING

    # -- the Storage protocol ------------------------------------------------------

    def ensure_root(self) -> None:
        """Create the repository directory and its parents; the share must exist."""
        with self._boundary(f"cannot create {self._where('')}"):
            if self._root:
                self._make_dirs(self._root)
            else:
                self._share.get_share_properties()

    def root_exists(self) -> bool:
        """Whether the repository directory exists; a missing share is an error."""
        with self._boundary(f"cannot check {self._where('')}"):
            try:
                if not self._root:
                    self._share.get_share_properties()
                else:
                    self._share.get_directory_client(self._path("")).get_directory_properties()
            except HttpResponseError as exc:
                if self._is_missing(exc):
                    return False
                raise
        return True

    def read(self, key: str) -> bytes:
        with self.open_read(key) as stream:
            return stream.read()

    @contextmanager
    def open_read(self, key: str) -> Iterator[BinaryIO]:
        """A buffered stream over 4 MiB range downloads; ObjectNotFoundError at once."""
        what = f"cannot read {self._where(key)}"
        client = self._file(self._path(key))
        with self._boundary(what):
            properties = client.get_file_properties()
        fetch = self._range_fetcher(client, str(properties.etag), what)
        with buffered_reader(_Ranges(int(properties.size), fetch).fill) as stream:
            yield stream

    def write_atomic(self, key: str, data: bytes) -> None:
        write_whole(self, key, data)

    @contextmanager
    def open_write(self, key: str) -> Iterator[ByteSink]:
        """Upload under a temporary name, then rename over the key (see the module doc)."""
        what = f"cannot write {self._where(key)}"
        path = self._path(key)
        temp = self._temp_path(path)
        writer = _RangeWriter(self._range_uploader(temp, what))

        def commit() -> None:
            writer.close()
            self._commit(temp, path, writer.file_id, overwrite=True, what=what)

        with staged(writer, commit, self._discarder(writer, temp)) as out:
            yield out

    def create_exclusive(self, key: str, data: bytes) -> None:
        """Write a temporary file, then rename it onto the key without replacing."""
        what = f"cannot create {self._where(key)}"
        path = self._path(key)
        temp = self._temp_path(path)
        writer = _RangeWriter(self._range_uploader(temp, what))

        def commit() -> None:
            writer.close()
            # overwrite=False: the service refuses the rename if the key
            # exists, atomically; that is the exclusive create.
            self._commit(temp, path, writer.file_id, overwrite=False, what=what)

        with staged(writer, commit, self._discarder(writer, temp)) as out:
            out.write(data)

    def size(self, key: str) -> int:
        with self._boundary(f"cannot read {self._where(key)}"):
            return int(self._file(self._path(key)).get_file_properties().size)

    def exists(self, key: str) -> bool:
        """Whether an object (a file, not a folder) exists under ``key``."""
        with self._boundary(f"cannot check {self._where(key)}"):
            try:
                self._file(self._path(key)).get_file_properties()
            except HttpResponseError as exc:
                if self._is_missing(exc):
                    return False
                raise
        return True

    def list_dir(self, key: str) -> list[Entry]:
        """Files and directories directly inside a folder, sorted; [] if it is missing."""
        with self._boundary(f"cannot list {self._where(key)}"):
            found = self._list(self._path(key))
        entries = [
            Entry(item.name, True, 0)
            if _is_directory(item)
            else Entry(item.name, False, int(item.size))
            for item in found
        ]
        return sorted(entries, key=lambda e: e.name)

    def delete(self, key: str) -> None:
        """Delete one object; a missing object is not an error."""
        with self._boundary(f"cannot delete {self._where(key)}"):
            self._delete_file(self._path(key))

    def delete_tree(self, key: str) -> None:
        """Delete a folder with everything in it (file by file: the REST API has
        no recursive delete); a missing folder is not an error."""
        with self._boundary(f"cannot delete {self._where(key)}"):
            self._delete_tree(self._path(key))

    # -- helpers: directories ------------------------------------------------------

    def _make_dirs(self, parts: list[str]) -> None:
        """Create each directory of a path that is missing, from the top."""
        for depth in range(1, len(parts) + 1):
            directory = self._share.get_directory_client("/".join(parts[:depth]))
            try:
                directory.create_directory()
            except HttpResponseError as exc:
                if _error_code(exc) != "ResourceAlreadyExists":
                    raise

    def _list(self, path: str) -> list[Any]:
        """The items of a directory; [] when it does not exist."""
        try:
            return list(self._share.get_directory_client(path).list_directories_and_files())
        except HttpResponseError as exc:
            if self._is_missing(exc):
                return []
            raise

    def _delete_file(self, path: str) -> None:
        try:
            self._file(path).delete_file()
        except HttpResponseError as exc:
            if not self._is_missing(exc):
                raise

    def _delete_tree(self, path: str) -> None:
        """Delete a directory bottom-up: the service deletes only empty directories."""

        def children(folder: str) -> list[tuple[str, bool]]:
            return [
                (f"{folder}/{item.name}" if folder else str(item.name), _is_directory(item))
                for item in self._list(folder)
            ]

        remove_tree(path, children, self._delete_file, self._delete_directory)

    def _delete_directory(self, path: str) -> None:
        if not path:
            return  # the share's root directory cannot be deleted, only emptied
        try:
            self._share.get_directory_client(path).delete_directory()
        except HttpResponseError as exc:
            if not self._is_missing(exc):
                raise

    # -- helpers: upload -----------------------------------------------------------

    def _temp_path(self, path: str) -> str:
        parent, name = parent_of(path), path.rsplit("/", 1)[-1]
        return f"{parent}/{temp_name_for(name)}" if parent else temp_name_for(name)

    def _range_uploader(self, path: str, what: str) -> Callable[[int, bytes], str | None]:
        """A function uploading one range at an offset, growing the file first.

        It returns the file's id when it created the file, else None."""
        client = self._file(path)

        def upload(offset: int, data: bytes) -> str | None:
            file_id = None
            with self._boundary(what):
                if offset == 0:
                    file_id = self._create_file(client, path, len(data))
                else:
                    client.resize_file(offset + len(data))
                if data:
                    client.upload_range(data, offset=offset, length=len(data))
            return file_id

        return upload

    def _create_file(self, client: ShareFileClient, path: str, size: int) -> str | None:
        """Create File, creating the missing parent directories on ParentNotFound.

        Returns the new file's id (x-ms-file-id), None if the service sent none."""
        try:
            created = client.create_file(size=size)
        except HttpResponseError as exc:
            if _error_code(exc) != "ParentNotFound":
                raise
            self._make_dirs(path.split("/")[:-1])
            created = client.create_file(size=size)
        file_id = created.get("file_id")
        return str(file_id) if file_id else None

    def _commit(
        self, temp: str, path: str, file_id: str | None, *, overwrite: bool, what: str
    ) -> None:
        """Rename the uploaded temporary file onto ``path``.

        Rename File is the one request here that is not idempotent. When its
        answer is lost (the connection drops after the service renamed), the
        SDK sends it again and the repeat fails: the source is gone, or, with
        ``overwrite=False``, the target exists. If ``path`` now holds the very
        file that was uploaded (a file keeps its id across a rename), the first
        attempt did the work and the commit succeeded; otherwise the error stands."""
        with self._boundary(what):
            try:
                self._file(temp).rename_file(path, overwrite=overwrite)
            except HttpResponseError as exc:
                code = _error_code(exc)
                if code not in _MISSING and code != "ResourceAlreadyExists":
                    raise
                if file_id is None or self._file_id(path) != file_id:
                    raise

    def _file_id(self, path: str) -> str | None:
        """The id of the file at ``path``; None when there is none."""
        try:
            file_id = self._file(path).get_file_properties().file_id
        except HttpResponseError as exc:
            if self._is_missing(exc):
                return None
            raise
        return str(file_id) if file_id else None

    def _discarder(self, writer: _RangeWriter, path: str) -> Callable[[BaseException], None]:
        """Best-effort removal of the temporary file ``writer`` may have created,
        after a failure; staging cleanup finds what is left (its name holds
        TEMP_MARKER)."""

        def discard(_: BaseException) -> None:
            if writer.started:
                with contextlib.suppress(AzureError):
                    self._file(path).delete_file(retry_total=0)

        return discard

    # -- helpers: download ---------------------------------------------------------

    def _range_fetcher(
        self, client: ShareFileClient, etag: str, what: str
    ) -> Callable[[int, int], bytes]:
        """A function reading one range, retrying bodies cut off mid-stream."""

        def fetch(offset: int, length: int) -> bytes:
            for attempt in range(READ_ATTEMPTS):
                if attempt:
                    self._sleep(_QuickRetry.FIRST_BACKOFF * 2 ** (attempt - 1))
                try:
                    download = client.download_file(offset=offset, length=length)
                    data = download.readall()
                except AzureError as exc:
                    if not _interrupted(exc):
                        self._fail(exc, what)
                    continue
                if str(download.properties.etag) != etag:
                    raise StorageError(f"{what}: it was replaced while being read")
                if len(data) == length:
                    return data
            raise UnreachableError(
                f"{what}: the connection to Azure Files at {self._account} broke off "
                f"during each of {READ_ATTEMPTS} attempts"
            )

        return fetch


def _is_directory(item: Any) -> bool:
    """Whether an item of a directory listing is a directory (else a file)."""
    return isinstance(item, DirectoryProperties)


def _interrupted(exc: AzureError) -> bool:
    """Whether an error is a response cut off mid-body, which is worth a retry.

    The SDK reports it as an HttpResponseError ("Download stream interrupted")
    carrying the successful (206) response, or as a ServiceResponseError."""
    if isinstance(exc, ServiceResponseError):
        return True
    return isinstance(exc, HttpResponseError) and (
        exc.status_code is None or 200 <= exc.status_code < 300
    )


def _network_reason(exc: BaseException) -> str:
    """A short cause for a connection failure, found in the exception chain."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ConnectionRefusedError):
            return " (connection refused)"
        if isinstance(current, socket.gaierror):
            return " (the host name does not resolve)"
        if isinstance(current, TimeoutError) or (
            isinstance(current, OSError) and current.errno == errno.ETIMEDOUT
        ):
            return " (the connection timed out)"
        # azure-core keeps the transport's exception in inner_exception.
        current = (
            current.__cause__ or current.__context__ or getattr(current, "inner_exception", None)
        )
    return ""


class _Ranges:
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


class _RangeWriter:
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
