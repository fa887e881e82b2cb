"""The Storage implementation on an Azure file share: the operations, the
directories, and the upload's atomic commit (see the package doc)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO

from azure.core.exceptions import AzureError, HttpResponseError
from azure.storage.fileshare import DirectoryProperties, ShareFileClient

from reconciler.errors import StorageError
from reconciler.storage.azure.client import account_name, make_share_client, public_url
from reconciler.storage.azure.errors import MISSING, AzureErrors, error_code, is_missing
from reconciler.storage.azure.ranges import Ranges, RangeWriter, range_fetcher, read_range
from reconciler.storage.base import Entry, parent_of
from reconciler.storage.keys import check_key, temp_name_for
from reconciler.storage.locations import AzureCredential
from reconciler.storage.plumbing import (
    buffered_reader,
    check_range,
    remove_tree,
    staged,
    write_whole,
)
from reconciler.streams import ByteSink


def _directory_parts(directory: str) -> list[str]:
    """The parts of the repository directory inside the share ('' is the share root)."""
    try:
        return check_key(directory.strip("/"))
    except ValueError:
        raise StorageError(
            f"the Azure Files directory {directory!r} is not a plain '/'-separated path"
        ) from None


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
        url = public_url(account_url)
        self._account = account_name(account_url)
        self._share_name = share
        self._root = _directory_parts(directory)
        self._sleep = sleep
        self._errors = AzureErrors(url, self._account, share, retry_total)
        self._share = make_share_client(
            account_url,
            share,
            credential,
            account=self._account,
            retry_total=retry_total,
            sleep=sleep,
        )

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

    # -- the Storage protocol ------------------------------------------------------

    def ensure_root(self) -> None:
        """Create the repository directory and its parents; the share must exist."""
        with self._errors.boundary(f"cannot create {self._where('')}"):
            if self._root:
                self._make_dirs(self._root)
            else:
                self._share.get_share_properties()

    def root_exists(self) -> bool:
        """Whether the repository directory exists; a missing share is an error."""
        with self._errors.boundary(f"cannot check {self._where('')}"):
            try:
                if not self._root:
                    self._share.get_share_properties()
                else:
                    self._share.get_directory_client(self._path("")).get_directory_properties()
            except HttpResponseError as exc:
                if is_missing(exc):
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
        with self._errors.boundary(what):
            properties = client.get_file_properties()
        fetch = range_fetcher(
            client, str(properties.etag), what, errors=self._errors, sleep=self._sleep
        )
        with buffered_reader(Ranges(int(properties.size), fetch).fill) as stream:
            yield stream

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        """One Get File with a range; IntegrityError when the file ends before it."""
        check_range(offset, length)
        return read_range(
            self._file(self._path(key)),
            offset,
            length,
            self._where(key),
            errors=self._errors,
            sleep=self._sleep,
        )

    def write_atomic(self, key: str, data: bytes) -> None:
        write_whole(self, key, data)

    @contextmanager
    def open_write(self, key: str) -> Iterator[ByteSink]:
        """Upload under a temporary name, then rename over the key (see the package doc)."""
        what = f"cannot write {self._where(key)}"
        path = self._path(key)
        temp = self._temp_path(path)
        writer = RangeWriter(self._range_uploader(temp, what))

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
        writer = RangeWriter(self._range_uploader(temp, what))

        def commit() -> None:
            writer.close()
            # overwrite=False: the service refuses the rename if the key
            # exists, atomically; that is the exclusive create.
            self._commit(temp, path, writer.file_id, overwrite=False, what=what)

        with staged(writer, commit, self._discarder(writer, temp)) as out:
            out.write(data)

    def size(self, key: str) -> int:
        with self._errors.boundary(f"cannot read {self._where(key)}"):
            return int(self._file(self._path(key)).get_file_properties().size)

    def exists(self, key: str) -> bool:
        """Whether an object (a file, not a folder) exists under ``key``."""
        with self._errors.boundary(f"cannot check {self._where(key)}"):
            try:
                self._file(self._path(key)).get_file_properties()
            except HttpResponseError as exc:
                if is_missing(exc):
                    return False
                raise
        return True

    def list_dir(self, key: str) -> list[Entry]:
        """Files and directories directly inside a folder, sorted; [] if it is missing."""
        with self._errors.boundary(f"cannot list {self._where(key)}"):
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
        with self._errors.boundary(f"cannot delete {self._where(key)}"):
            self._delete_file(self._path(key))

    def delete_tree(self, key: str) -> None:
        """Delete a folder with everything in it (file by file: the REST API has
        no recursive delete); a missing folder is not an error."""
        with self._errors.boundary(f"cannot delete {self._where(key)}"):
            self._delete_tree(self._path(key))

    # -- helpers: directories ------------------------------------------------------

    def _make_dirs(self, parts: list[str]) -> None:
        """Create each directory of a path that is missing, from the top."""
        for depth in range(1, len(parts) + 1):
            directory = self._share.get_directory_client("/".join(parts[:depth]))
            try:
                directory.create_directory()
            except HttpResponseError as exc:
                if error_code(exc) != "ResourceAlreadyExists":
                    raise

    def _list(self, path: str) -> list[Any]:
        """The items of a directory; [] when it does not exist."""
        try:
            return list(self._share.get_directory_client(path).list_directories_and_files())
        except HttpResponseError as exc:
            if is_missing(exc):
                return []
            raise

    def _delete_file(self, path: str) -> None:
        try:
            self._file(path).delete_file()
        except HttpResponseError as exc:
            if not is_missing(exc):
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
            if not is_missing(exc):
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
            with self._errors.boundary(what):
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
            if error_code(exc) != "ParentNotFound":
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
        with self._errors.boundary(what):
            try:
                self._file(temp).rename_file(path, overwrite=overwrite)
            except HttpResponseError as exc:
                code = error_code(exc)
                if code not in MISSING and code != "ResourceAlreadyExists":
                    raise
                if file_id is None or self._file_id(path) != file_id:
                    raise

    def _file_id(self, path: str) -> str | None:
        """The id of the file at ``path``; None when there is none."""
        try:
            file_id = self._file(path).get_file_properties().file_id
        except HttpResponseError as exc:
            if is_missing(exc):
                return None
            raise
        return str(file_id) if file_id else None

    def _discarder(self, writer: RangeWriter, path: str) -> Callable[[BaseException], None]:
        """Best-effort removal of the temporary file ``writer`` may have created,
        after a failure; staging cleanup finds what is left (its name holds
        TEMP_MARKER)."""

        def discard(_: BaseException) -> None:
            if writer.started:
                with contextlib.suppress(AzureError):
                    self._file(path).delete_file(retry_total=0)

        return discard


def _is_directory(item: Any) -> bool:
    """Whether an item of a directory listing is a directory (else a file)."""
    return isinstance(item, DirectoryProperties)
