"""Stage 1: parse YAML documents, keeping the line of every mapping key."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from reconciler.errors import ConfigError


class LineDict(dict[str, Any]):
    """A mapping parsed from YAML that remembers where each key was written."""

    line: int
    key_lines: dict[str, int]


@dataclass(frozen=True)
class Document:
    """One YAML document of a configuration file."""

    file: Path
    index: int
    line: int
    data: Any


class _KeyProblem(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line


class _LineLoader(yaml.SafeLoader):
    def construct_mapping(  # type: ignore[override]
        self, node: yaml.MappingNode, deep: bool = False
    ) -> LineDict:
        self.flatten_mapping(node)  # resolves `<<: *anchor` merge keys
        mapping = LineDict()
        mapping.line = node.start_mark.line + 1
        mapping.key_lines = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if not isinstance(key, str):
                raise _KeyProblem(line, f"keys must be strings, not {key!r}")
            if key in mapping:
                raise _KeyProblem(line, f"duplicate key {key!r}")
            mapping[key] = self.construct_object(value_node, deep=deep)
            mapping.key_lines[key] = line
        return mapping


_LineLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _LineLoader.construct_mapping,
)


def parse_file(path: Path) -> list[Document]:
    """The non-empty YAML documents in ``path``.

    Raises ConfigError naming the file (and line) when it cannot be read or parsed."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: the file does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the file ({_reason(exc)})") from None
    documents: list[Document] = []
    try:
        loader = _LineLoader(text)
        try:
            index = 0
            while loader.check_node():
                node = loader.get_node()
                if node is None:
                    break
                data = loader.construct_document(node)
                if data is not None:
                    documents.append(Document(path, index, node.start_mark.line + 1, data))
                index += 1
        finally:
            loader.dispose()
    except _KeyProblem as exc:
        raise ConfigError(f"{path}:{exc.line}: {exc}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ConfigError(f"{where}: invalid YAML: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    return documents


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc)


def configuration_files(path: Path) -> list[Path]:
    """The files ``-f PATH`` names: the file itself, or every *.yaml/*.yml in a folder.

    Raises ConfigError when the path does not exist or the folder holds no YAML file."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
        if not files:
            raise ConfigError(f"{path}: the folder holds no *.yaml or *.yml file")
        return files
    if not path.exists():
        raise ConfigError(f"{path}: the file does not exist")
    return [path]


def line_of(data: Any, path: tuple[str | int, ...], default: int) -> int:
    """The line where the value at ``path`` (a JSON path) was written, best effort."""
    line = default
    node = data
    for part in path:
        if isinstance(node, LineDict) and isinstance(part, str):
            line = node.key_lines.get(part, line)
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
            if isinstance(node, LineDict):
                line = node.line
        else:
            break
    return line
