"""What every command shares: error reporting, option types, configuration loading."""

from __future__ import annotations

import functools
import traceback
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from reconciler.errors import BackupctlError, ConfigError
from reconciler.spec import load_configurations
from reconciler.spec.model import BackupConfiguration
from reconciler.timeutil import parse_time

F = TypeVar("F", bound=Callable[..., Any])


class UserFacingExit(Exception):
    """Leave with this exit code after having printed what the user needs."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    raise UserFacingExit(1)


def handle_errors(func: F) -> F:
    """Turn every error into one clear message on stderr and exit code 1.

    A traceback is shown only with --debug."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = bool(click.get_current_context().find_root().params.get("debug"))
        try:
            return func(*args, **kwargs)
        except UserFacingExit:
            raise
        except ConfigError as exc:
            if debug:
                traceback.print_exc()
            for line in str(exc).splitlines():
                click.echo(f"error: {line}", err=True)
            raise UserFacingExit(1) from None
        except BackupctlError as exc:
            if debug:
                traceback.print_exc()
            fail(str(exc))
        except KeyboardInterrupt:
            fail("interrupted; nothing half-written was committed")
        except Exception as exc:
            if debug:
                traceback.print_exc()
            fail(
                f"unexpected internal error ({type(exc).__name__}); run again with --debug"
                " for details and report it"
            )

    return wrapper  # type: ignore[return-value]


class TimeParam(click.ParamType):  # type: ignore[type-arg]
    name = "TIME"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return parse_time(str(value))
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 time such as 2026-11-25T12:00:00Z", param, ctx)


def config_option(func: F) -> F:
    return click.option(
        "-f",
        "--file",
        "config_path",
        required=True,
        type=click.Path(path_type=Path),
        help="A configuration file, or a folder of *.yaml/*.yml files.",
    )(func)


def load(path: Path, check_validity: bool = True) -> list[BackupConfiguration]:
    return load_configurations(path, check_validity=check_validity)


def pick_one(
    configs: list[BackupConfiguration], name: str | None, path: Path
) -> BackupConfiguration:
    """The configuration a single-configuration command works on."""
    if name is not None:
        for config in configs:
            if config.name == name:
                return config
        known = ", ".join(c.name for c in configs)
        raise ConfigError(f"{path} has no configuration named {name!r} (it has: {known})")
    if len(configs) > 1:
        known = ", ".join(c.name for c in configs)
        raise ConfigError(
            f"{path} holds several configurations ({known}); choose one with --configuration"
        )
    return configs[0]


def echo_err(message: str) -> None:
    click.echo(message, err=True)


def report_error(prefix: str, exc: BaseException) -> None:
    """One configuration's error as one line; with --debug, its traceback first."""
    if click.get_current_context().find_root().params.get("debug"):
        traceback.print_exception(exc)
    echo_err(f"error: {prefix}{exc}")
