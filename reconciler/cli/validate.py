"""``backupctl validate``: schema and semantic checks, for pre-commit and CI."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import click

from reconciler.cli.common import (
    UserFacingExit,
    fail,
    handle_errors,
    load,
)
from reconciler.errors import ConfigError
from reconciler.spec.model import BackupConfiguration
from reconciler.spec.secrets import secret_problems


@click.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "-f",
    "--file",
    "config_path",
    type=click.Path(path_type=Path),
    help="A configuration file, or a folder of *.yaml/*.yml files.",
)
@click.option(
    "--resolve-secrets", is_flag=True, help="Also check that every secret reference resolves."
)
@click.option(
    "--output",
    type=click.Choice(["text", "github"]),
    default="text",
    show_default=True,
    help="github: print errors as GitHub Actions annotations (::error file=...,line=...::).",
)
@handle_errors
def validate(
    paths: tuple[Path, ...], config_path: Path | None, resolve_secrets: bool, output: str
) -> None:
    """Check configuration files (-f PATH, or several PATHS as pre-commit passes them):
    schema and semantics; touches no storage and needs no secrets."""
    every = ([config_path] if config_path else []) + list(paths)
    if not every:
        fail("give the configuration to check: -f PATH (a file or a folder)")
    problems: list[str] = []
    valid: list[BackupConfiguration] = []
    for path in every:
        try:
            configs = load(path)
        except ConfigError as exc:
            problems.extend(str(exc).splitlines())
            continue
        if resolve_secrets:
            unresolved = [p for config in configs for p in secret_problems(config)]
            if unresolved:
                problems.extend(unresolved)
                continue
        valid.extend(configs)
    if problems:
        for line in problems:
            click.echo(
                github_annotation(line) if output == "github" else f"error: {line}",
                err=output != "github",
            )
        raise UserFacingExit(1)
    names = ", ".join(c.name for c in valid)
    plural = "s" if len(valid) != 1 else ""
    where = every[0] if len(every) == 1 else f"{len(every)} paths"
    click.echo(f"{where}: {len(valid)} valid configuration{plural} ({names})")


def github_annotation(problem: str) -> str:
    """``file:line: message`` as a GitHub Actions error annotation."""
    match = re.match(r"^(?P<file>[^:\n]+?):(?P<line>\d+): (?P<message>.*)$", problem)
    if match is None:
        file, _, message = problem.partition(": ")
        return f"::error file={_escape_property(file)}::{_escape_data(message or problem)}"
    file = match["file"]
    with contextlib.suppress(ValueError):
        file = str(Path(file).resolve().relative_to(Path.cwd()))
    return (
        f"::error file={_escape_property(file)},line={match['line']}::"
        f"{_escape_data(match['message'])}"
    )


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")
