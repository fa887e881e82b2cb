"""The emulator's state: shares holding a tree of directories and files, in memory.

Every operation takes the store's lock for its whole duration, so each one is
atomic with respect to the others; that is what makes a rename without replace
a reliable exclusive create, as on the real service. Names are matched
case-insensitively and stored with their original case, like Azure Files.
Failures raise ``ServiceError`` with the code the real service would send.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from tests.azure_emulator import errors

_ids = itertools.count(1)


def _fold(name: str) -> str:
    return name.casefold()


@dataclass
class Node:
    """What files and directories share: a name, an id and change stamps."""

    name: str
    file_id: int = field(default_factory=lambda: next(_ids))
    created: datetime = field(default_factory=lambda: datetime.now(UTC))
    modified: datetime = field(default_factory=lambda: datetime.now(UTC))
    version: int = 1

    @property
    def etag(self) -> str:
        return f'"0x8D{self.file_id:06X}{self.version:08X}"'

    def touch(self) -> None:
        self.modified = datetime.now(UTC)
        self.version += 1


@dataclass
class FileNode(Node):
    data: bytearray = field(default_factory=bytearray)


@dataclass
class DirNode(Node):
    children: dict[str, Node] = field(default_factory=dict)

    def child(self, name: str) -> Node | None:
        return self.children.get(_fold(name))

    def add(self, node: Node) -> None:
        self.children[_fold(node.name)] = node
        self.touch()

    def remove(self, name: str) -> None:
        del self.children[_fold(name)]
        self.touch()


@dataclass
class Share:
    """One file share with an optional quota on the total size of its files."""

    name: str
    quota_bytes: int | None
    root: DirNode = field(default_factory=lambda: DirNode(""))
    used_bytes: int = 0


class Store:
    """All shares of the emulated account."""

    def __init__(self, quota_error_code: str = "ShareSizeLimitReached") -> None:
        self.lock = threading.RLock()
        self.shares: dict[str, Share] = {}
        self.quota_error_code = quota_error_code

    # -- shares --------------------------------------------------------------

    def create_share(self, name: str, quota_bytes: int | None) -> Share:
        with self.lock:
            share = Share(name, quota_bytes)
            self.shares[name] = share
            return share

    def share(self, name: str) -> Share:
        with self.lock:
            try:
                return self.shares[name]
            except KeyError:
                raise errors.share_not_found() from None

    # -- lookups -------------------------------------------------------------

    def parent_dir(self, share: Share, parts: list[str]) -> DirNode:
        """The directory that holds ``parts[-1]``; ParentNotFound if it is missing."""
        node: Node = share.root
        for name in parts[:-1]:
            assert isinstance(node, DirNode)
            found = node.child(name)
            if not isinstance(found, DirNode):
                raise errors.parent_not_found()
            node = found
        assert isinstance(node, DirNode)
        return node

    def directory(self, share: Share, parts: list[str]) -> DirNode:
        if not parts:
            return share.root
        found = self.parent_dir(share, parts).child(parts[-1])
        if not isinstance(found, DirNode):
            raise errors.resource_not_found()
        return found

    def file(self, share: Share, parts: list[str]) -> FileNode:
        if not parts:
            raise errors.resource_not_found()
        found = self.parent_dir(share, parts).child(parts[-1])
        if not isinstance(found, FileNode):
            raise errors.resource_not_found()
        return found

    # -- quota ---------------------------------------------------------------

    def _grow(self, share: Share, delta: int) -> None:
        """Account for ``delta`` more bytes; the share's quota error if over quota."""
        quota = share.quota_bytes
        if delta > 0 and quota is not None and share.used_bytes + delta > quota:
            raise errors.share_full(self.quota_error_code)
        share.used_bytes += delta

    # -- directories ---------------------------------------------------------

    def create_directory(self, share: Share, parts: list[str]) -> DirNode:
        with self.lock:
            parent = self.parent_dir(share, parts)
            if parent.child(parts[-1]) is not None:
                raise errors.already_exists()
            node = DirNode(parts[-1])
            parent.add(node)
            return node

    def delete_directory(self, share: Share, parts: list[str]) -> None:
        with self.lock:
            node = self.directory(share, parts)
            if not parts:
                raise errors.bad_request("InvalidUri", "The root directory cannot be deleted.")
            if node.children:
                raise errors.directory_not_empty()
            self.parent_dir(share, parts).remove(parts[-1])

    def list_directory(self, share: Share, parts: list[str]) -> list[Node]:
        with self.lock:
            node = self.directory(share, parts)
            return sorted(node.children.values(), key=lambda n: n.name)

    # -- files ---------------------------------------------------------------

    def create_file(self, share: Share, parts: list[str], size: int) -> FileNode:
        """Create (or reset, as the service does) a file of ``size`` zero bytes."""
        with self.lock:
            parent = self.parent_dir(share, parts)
            existing = parent.child(parts[-1])
            if isinstance(existing, DirNode):
                raise errors.type_mismatch()
            old_size = len(existing.data) if isinstance(existing, FileNode) else 0
            self._grow(share, size - old_size)
            node = FileNode(parts[-1], data=bytearray(size))
            parent.add(node)
            return node

    def resize_file(self, share: Share, parts: list[str], size: int) -> FileNode:
        with self.lock:
            node = self.file(share, parts)
            self._grow(share, size - len(node.data))
            if size < len(node.data):
                del node.data[size:]
            else:
                node.data.extend(bytes(size - len(node.data)))
            node.touch()
            return node

    def write_range(self, share: Share, parts: list[str], start: int, data: bytes) -> FileNode:
        with self.lock:
            node = self.file(share, parts)
            if start + len(data) > len(node.data):
                raise errors.invalid_range()
            node.data[start : start + len(data)] = data
            node.touch()
            return node

    def clear_range(self, share: Share, parts: list[str], start: int, end: int) -> FileNode:
        return self.write_range(share, parts, start, bytes(end - start + 1))

    def delete_file(self, share: Share, parts: list[str]) -> None:
        with self.lock:
            node = self.file(share, parts)
            share.used_bytes -= len(node.data)
            self.parent_dir(share, parts).remove(parts[-1])

    def rename_file(
        self, share: Share, source: list[str], target: list[str], replace: bool
    ) -> None:
        """Move a file; atomic, and refused when the target exists unless ``replace``."""
        with self.lock:
            node = self.file(share, source)
            target_parent = self.parent_dir(share, target)
            existing = target_parent.child(target[-1])
            if existing is node:
                return
            if isinstance(existing, DirNode):
                raise errors.type_mismatch()
            if isinstance(existing, FileNode):
                if not replace:
                    raise errors.already_exists()
                share.used_bytes -= len(existing.data)
            self.parent_dir(share, source).remove(source[-1])
            node.name = target[-1]
            node.touch()
            target_parent.add(node)

    # -- inspection for tests ------------------------------------------------

    def files(self, share: Share) -> dict[str, bytes]:
        with self.lock:
            return {path: bytes(node.data) for path, node in _walk(share.root, "")}

    def remove_tree(self, share: Share, parts: list[str]) -> None:
        """Delete a directory and everything in it, without any HTTP involved."""
        with self.lock:
            try:
                parent = self.parent_dir(share, parts)
            except errors.ServiceError:
                return
            node = parent.child(parts[-1])
            if node is None:
                return
            if isinstance(node, FileNode):
                share.used_bytes -= len(node.data)
            elif isinstance(node, DirNode):
                share.used_bytes -= sum(len(f.data) for _, f in _walk(node, ""))
            parent.remove(parts[-1])


def _walk(directory: DirNode, prefix: str) -> Iterator[tuple[str, FileNode]]:
    for node in directory.children.values():
        path = f"{prefix}{node.name}"
        if isinstance(node, FileNode):
            yield path, node
        elif isinstance(node, DirNode):
            yield from _walk(node, path + "/")
