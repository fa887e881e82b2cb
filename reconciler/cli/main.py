"""``backupctl``: the command group; each command lives in its own module."""

from __future__ import annotations

import gc
import sys

import click

from reconciler import __version__
from reconciler.cli.backups import backups
from reconciler.cli.common import UserFacingExit, echo_err
from reconciler.cli.daemon import daemon
from reconciler.cli.keys import keys
from reconciler.cli.reconcile import apply, plan
from reconciler.cli.restore import restore
from reconciler.cli.unlock import unlock
from reconciler.cli.validate import validate
from reconciler.cli.verify import verify


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.version_option(__version__, prog_name="backupctl")
def cli(debug: bool) -> None:
    """Declarative reconciler for encrypted infrastructure backups."""


cli.add_command(validate)
cli.add_command(plan)
cli.add_command(apply)
cli.add_command(unlock)
cli.add_command(backups)
cli.add_command(restore)
cli.add_command(keys)
cli.add_command(verify)
cli.add_command(daemon)


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
