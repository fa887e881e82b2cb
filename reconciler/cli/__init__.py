"""The ``backupctl`` command line."""

from reconciler.cli.main import main

__all__ = ["main"]
