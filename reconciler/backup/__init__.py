"""Making backups (engine) and reading them back (restore, verify)."""
