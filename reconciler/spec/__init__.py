"""The configuration pipeline: YAML -> schema validation -> model with semantic checks.

    load_configurations(path)
      parse_file         (yamlfile: YAML with the line of every key)
      schema_errors      (schema: every JSON Schema violation, with file:line: path)
      build_configuration (build: frozen model, certificate and cross-field checks)
      unique names across all documents

Secrets are not resolved here (``validate`` needs none); see ``secrets``.
"""

from __future__ import annotations

from pathlib import Path

from reconciler.errors import ConfigError
from reconciler.spec.build import build_configuration
from reconciler.spec.model import BackupConfiguration
from reconciler.spec.schema import schema_errors
from reconciler.spec.yamlfile import Document, configuration_files, parse_file


def load_configurations(path: Path, check_validity: bool = True) -> list[BackupConfiguration]:
    """Every BackupConfiguration under ``path`` (a file or a folder), ordered by name.

    ``check_validity=False`` accepts an expired certificate: restoring and
    listing must keep working after the certificate expired.

    Raises ConfigError listing every problem found (one per line) when any
    document is invalid, or when there is no configuration at all."""
    problems: list[str] = []
    documents: list[Document] = []
    for file in configuration_files(path):
        try:
            documents.extend(parse_file(file))
        except ConfigError as exc:
            problems.append(str(exc))
    configurations: list[BackupConfiguration] = []
    for document in documents:
        errors = schema_errors(document)
        if errors:
            problems.extend(errors)
            continue
        config, errors = build_configuration(document, check_validity)
        problems.extend(errors)
        if config is not None:
            configurations.append(config)
    problems.extend(_duplicate_names(configurations))
    if problems:
        raise ConfigError("\n".join(problems))
    if not configurations:
        raise ConfigError(f"{path}: holds no BackupConfiguration document")
    return sorted(configurations, key=lambda c: c.name)


def _duplicate_names(configurations: list[BackupConfiguration]) -> list[str]:
    first: dict[str, BackupConfiguration] = {}
    problems = []
    for config in configurations:
        if config.name in first:
            problems.append(
                f"{config.origin}: metadata.name: the name {config.name!r} is already used"
                f" at {first[config.name].origin}"
            )
        first.setdefault(config.name, config)
    return problems
