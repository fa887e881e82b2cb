"""``backupctl``: the command group; each command lives in its own module."""

from __future__ import annotations

import gc
import importlib
import sys

import click

from reconciler import __version__
from reconciler.cli.common import UserFacingExit, echo_err

COMMANDS = {
    "validate": "reconciler.cli.validate",
    "plan": "reconciler.cli.reconcile",
    "apply": "reconciler.cli.reconcile",
    "unlock": "reconciler.cli.unlock",
    "backups": "reconciler.cli.backups",
    "restore": "reconciler.cli.restore",
    "keys": "reconciler.cli.keys",
    "verify": "reconciler.cli.verify",
    "daemon": "reconciler.cli.daemon",
    "status": "reconciler.cli.status",
}
"""Each command and the module that defines it (as a function of the same name)."""


class _LazyGroup(click.Group):
    """Imports a command's module only when that command runs (or help lists it):
    a command does not pay for importing every other one (the daemon's
    metrics, the key tools, the restore and verify code) at every start."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMANDS.get(cmd_name)
        if module is None:
            return None
        command = getattr(importlib.import_module(module), cmd_name.replace("-", "_"))
        assert isinstance(command, click.Command)
        return command


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.version_option(__version__, prog_name="backupctl")
def cli(debug: bool) -> None:
    """Declarative reconciler for encrypted infrastructure backups."""


def main() -> None:
    # Everything imported so far lives until exit: keep the collector from
    # walking it again and again (and once more at exit, a tenth of a second).
    gc.freeze()
    try:
        cli.main(standalone_mode=False)
    except UserFacingExit as exc:
        sys.exit(exc.code)
    except click.exceptions.Abort:
        echo_err("error: aborted")
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(1)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    sys.exit(0)
