"""The ``backupctl`` command line."""


def main() -> None:
    # Imported here, not above: importing any module of this package (a test
    # imports one command) should not import them all.
    from reconciler.cli.main import main as run

    run()


__all__ = ["main"]
