"""One interface for every kind of source: ``SourceKind``.

Backing up, restoring and verifying ask a source's kind what to do instead of
branching on its name. Each kind here adapts a configured source (or a
manifest's record of one) to the low-level functions of its module, which
take plain values: ``tree_walk``/``tree_restore``/``tar_reader`` for
``files``, ``sqlite`` and ``command`` for the others.

Sources sit below the configuration model in the layers, so a configured
source is seen here through what it has (``ConfiguredSource`` and one
settings protocol per kind), never through ``spec.model``'s classes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from reconciler.sources.command import read_dump, run_backup_command, write_dump
from reconciler.sources.known_files import KnownFiles
from reconciler.sources.sqlite import (
    check_database_stream,
    prepare_database_file,
    restore_database,
    snapshot_database,
)
from reconciler.sources.stats import SourceStats
from reconciler.sources.tar_reader import read_tree
from reconciler.sources.tree_restore import restore_tree
from reconciler.sources.tree_walk import write_tree
from reconciler.streams import ByteSink, ByteSource


class ConfiguredSource(Protocol):
    """What every configured source has: its name and the name of its kind."""

    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> str: ...


@runtime_checkable
class TreeSettings(ConfiguredSource, Protocol):
    """A configured ``files`` source."""

    @property
    def path(self) -> Path: ...

    @property
    def exclude(self) -> tuple[str, ...]: ...


@runtime_checkable
class DatabaseSettings(ConfiguredSource, Protocol):
    """A configured ``sqlite`` source."""

    @property
    def path(self) -> Path: ...


@runtime_checkable
class CommandSettings(ConfiguredSource, Protocol):
    """A configured ``command`` source."""

    @property
    def backup(self) -> tuple[str, ...]: ...

    @property
    def timeout_seconds(self) -> int: ...

    @property
    def workdir(self) -> Path: ...


class SourceKind(Protocol):
    """What backing up, restoring and verifying a source of one kind takes."""

    @property
    def name(self) -> str:
        """The kind's name, as configurations and manifests write it."""
        ...

    def produce(
        self,
        source: ConfiguredSource,
        out: ByteSink,
        work: Path,
        env: Mapping[str, str],
        known: KnownFiles | None = None,
    ) -> SourceStats:
        """Back ``source`` (a source of this kind) up as one byte stream written to ``out``.

        ``work`` is a private folder for staging, ``env`` the environment of a
        command; ``known`` (tar streams only, format 2's file cache) has large
        files' content that need not be read. Raises ``SourceError`` naming
        what could not be read."""
        ...

    def restore(self, stream: ByteSource, out: Path) -> SourceStats:
        """Write what ``stream`` holds to the new path ``out`` (a folder or a file).

        Raises ``IntegrityError`` (damaged data), ``RestoreError`` or OSError
        (``out`` cannot be written)."""
        ...

    def restored_file_name(self, name: str, source: ConfiguredSource | None) -> str | None:
        """With ``--to DIR``, the name of the file restored into ``DIR/<name>/``;
        None when this kind restores a folder. ``source`` is the configured
        source called ``name``, if there is one."""
        ...

    def prepare_to_replace(self, restored: Path, replaces: Path | None) -> None:
        """Make ``restored`` ready to be moved in place of ``replaces`` (None
        when it goes to a new place). Raises OSError."""
        ...

    def read_through(self, stream: ByteSource, work: Path) -> SourceStats:
        """Parse ``stream`` as a restore would, keeping nothing; ``work`` is a
        private folder for staging. Raises ``IntegrityError`` when the content
        is malformed and ``RestoreError`` when ``work`` cannot hold it."""
        ...

    @property
    def stream_is_tar(self) -> bool:
        """True when ``produce`` writes a tar stream (format 2 then chunks each
        file's content on its own, so a file unchanged anywhere is stored once)."""
        ...


@dataclass(frozen=True)
class FilesKind:
    """A folder tree, stored as a tar stream."""

    name: str = "files"
    stream_is_tar: bool = True

    def produce(
        self,
        source: ConfiguredSource,
        out: ByteSink,
        work: Path,
        env: Mapping[str, str],
        known: KnownFiles | None = None,
    ) -> SourceStats:
        assert isinstance(source, TreeSettings)
        return write_tree(source.path, source.exclude, out, known)

    def restore(self, stream: ByteSource, out: Path) -> SourceStats:
        return restore_tree(stream, out)

    def restored_file_name(self, name: str, source: ConfiguredSource | None) -> str | None:
        return None

    def prepare_to_replace(self, restored: Path, replaces: Path | None) -> None:
        pass

    def read_through(self, stream: ByteSource, work: Path) -> SourceStats:
        return read_tree(stream)


@dataclass(frozen=True)
class SqliteKind:
    """An SQLite database, stored as a consistent snapshot of its file."""

    name: str = "sqlite"
    stream_is_tar: bool = False

    def produce(
        self,
        source: ConfiguredSource,
        out: ByteSink,
        work: Path,
        env: Mapping[str, str],
        known: KnownFiles | None = None,
    ) -> SourceStats:
        assert isinstance(source, DatabaseSettings)
        return snapshot_database(source.path, out, work)

    def restore(self, stream: ByteSource, out: Path) -> SourceStats:
        return restore_database(stream, out)

    def restored_file_name(self, name: str, source: ConfiguredSource | None) -> str | None:
        # The configured database's file name, when the source is still configured
        # as a database; another kind's path under that name says nothing about it.
        if source is not None and source.kind == self.name:
            assert isinstance(source, DatabaseSettings)
            return source.path.name
        return f"{name}.db"

    def prepare_to_replace(self, restored: Path, replaces: Path | None) -> None:
        prepare_database_file(restored, replaces)

    def read_through(self, stream: ByteSource, work: Path) -> SourceStats:
        return check_database_stream(stream, work)


@dataclass(frozen=True)
class CommandKind:
    """A command's output, stored as it came (a dump); restored through a
    restore command, or as a file."""

    name: str = "command"
    stream_is_tar: bool = False

    def produce(
        self,
        source: ConfiguredSource,
        out: ByteSink,
        work: Path,
        env: Mapping[str, str],
        known: KnownFiles | None = None,
    ) -> SourceStats:
        assert isinstance(source, CommandSettings)
        return run_backup_command(
            source.backup, source.timeout_seconds, out, cwd=source.workdir, env=env
        )

    def restore(self, stream: ByteSource, out: Path) -> SourceStats:
        return write_dump(stream, out)

    def restored_file_name(self, name: str, source: ConfiguredSource | None) -> str | None:
        return f"{name}.dump"

    def prepare_to_replace(self, restored: Path, replaces: Path | None) -> None:
        pass

    def read_through(self, stream: ByteSource, work: Path) -> SourceStats:
        return read_dump(stream)


FILES = FilesKind()
SQLITE = SqliteKind()
COMMAND = CommandKind()

_BY_NAME: dict[str, SourceKind] = {kind.name: kind for kind in (FILES, SQLITE, COMMAND)}


def kind_of(source: ConfiguredSource) -> SourceKind:
    """The kind of a configured source (every kind a configuration can name has one)."""
    return _BY_NAME[source.kind]


def kind_named(name: str) -> SourceKind:
    """The kind a manifest records by ``name``.

    A name this version does not know is taken for an opaque stream, as a
    command's dump is: what restore and verification have always done with
    it (its bytes can still be restored with ``--to`` and read through)."""
    return _BY_NAME.get(name, COMMAND)
