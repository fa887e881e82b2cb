"""Stage 1: parse YAML documents, keeping the line of every mapping key."""

from __future__ import annotations

import re
from collections.abc import Iterable
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
    def __init__(self, line: int, message: str, quotes_text: bool = False) -> None:
        super().__init__(message)
        self.line = line
        self.quotes_text = quotes_text
        """The message shows text from the file (not just a field name)."""


class _LineLoader(yaml.SafeLoader):
    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (yaml.YAMLError, _KeyProblem):
            raise
        except (ValueError, TypeError, KeyError, AttributeError):
            # PyYAML's own constructors (`!!int x`, `!!bool x`, `!!timestamp x`)
            # fail with Python errors that quote the value: keep its position only.
            raise yaml.constructor.ConstructorError(
                None, None, f"the value cannot be read as {_tag_name(node.tag)}", node.start_mark
            ) from None

    def construct_mapping(  # type: ignore[override]
        self, node: yaml.MappingNode, deep: bool = False
    ) -> LineDict:
        if not isinstance(node, yaml.MappingNode):  # `!!set x`: flatten_mapping would crash
            raise yaml.constructor.ConstructorError(
                None, None, f"expected a mapping, but found {node.id}", node.start_mark
            )
        self.flatten_mapping(node)  # resolves `<<: *anchor` merge keys
        mapping = LineDict()
        mapping.line = node.start_mark.line + 1
        mapping.key_lines = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if not isinstance(key, str):
                raise _KeyProblem(line, f"keys must be strings, not {key!r}", quotes_text=True)
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
        secret = _secret_field_at(text, [exc.line - 1] if exc.quotes_text else [])
        raise ConfigError(
            _secret_problem(path, secret) if secret else f"{path}:{exc.line}: {exc}"
        ) from None
    except yaml.MarkedYAMLError as exc:
        marks = [m.line for m in (exc.problem_mark, exc.context_mark) if m is not None]
        secret = _secret_field_at(text, marks)
        if secret is not None:
            raise ConfigError(_secret_problem(path, secret)) from None
        mark = exc.problem_mark
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ConfigError(f"{where}: invalid YAML: {exc.problem}") from None
    except (ValueError, TypeError, KeyError, AttributeError):
        # A constructor PyYAML runs after the node was built (`!!set`, `!!omap`)
        # failed: its message may quote the value, and there is no position.
        raise ConfigError(f"{path}: invalid YAML: a value cannot be read") from None
    except yaml.YAMLError:
        # Without a position we cannot tell whether the message quotes a secret.
        raise ConfigError(f"{path}: invalid YAML") from None
    return documents


_TAG_PREFIX = "tag:yaml.org,2002:"


def _tag_name(tag: str) -> str:
    return "!!" + tag.removeprefix(_TAG_PREFIX) if tag.startswith(_TAG_PREFIX) else "its tag"


# A mapping key as written: `key:`, `"key":`, `- key:`, `{a: 1, key: ...}`.
# Deliberately loose: a false match can only hide an error's text, never show a secret.
_KEY = re.compile(r"""(?<![\w-])["']?([A-Za-z_][\w-]*)["']?[ \t]*:""")


@dataclass(frozen=True)
class _SecretField:
    line: int
    """1-based line of the secret field's key."""
    name: str


def _secret_field_at(text: str, error_lines: Iterable[int]) -> _SecretField | None:
    """The secret field whose key or value holds one of ``error_lines`` (0-based), if any.

    The YAML did not parse, so this reads the raw text: the error's line itself,
    then every line above it that is less indented (the keys it is nested under,
    which also owns a plain scalar continued on more indented lines)."""
    from reconciler.spec.schema import secret_field_names  # schema.py imports this module

    names = secret_field_names()
    lines = text.splitlines()
    error_lines = list(error_lines)
    for error_line in error_lines:
        found = _secret_owner(lines, min(error_line, len(lines) - 1), names)
        if found is not None:
            return found
    # A quote left open in a secret field swallows the lines after it, and the
    # error shows up further down: a secret field never holds a scalar, let
    # alone one spanning lines, so that scalar is what is wrong.
    last = max(error_lines, default=-1)
    for start in _multi_line_scalars(text):
        found = _secret_owner(lines, start, names) if start <= last else None
        if found is not None:
            return found
    return None


def _multi_line_scalars(text: str) -> list[int]:
    """The first line (0-based) of every scalar spanning lines, up to the first error."""
    starts: list[int] = []
    try:
        for token in yaml.scan(text, Loader=yaml.SafeLoader):
            if isinstance(token, yaml.ScalarToken) and token.end_mark.line > token.start_mark.line:
                starts.append(token.start_mark.line)
    except yaml.YAMLError:
        pass
    return starts


def _secret_owner(lines: list[str], index: int, names: frozenset[str]) -> _SecretField | None:
    if index < 0:
        return None
    threshold = _indent(lines[index]) + 1
    for i in range(index, -1, -1):
        line = lines[i]
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        indent = _indent(line)
        if indent >= threshold:
            continue
        for match in _KEY.finditer(line):
            if match.group(1) in names:
                return _SecretField(i + 1, match.group(1))
        threshold = indent
        if indent == 0:
            break
    return None


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _secret_problem(path: Path, field: _SecretField) -> str:
    return (
        f"{path}:{field.line}: {field.name}: invalid YAML in a secret field (its text is not"
        " shown); write it as {env: NAME} or {file: PATH}"
    )


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
