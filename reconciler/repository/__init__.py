"""The repository: what a storage location holds for one configuration, and its rules."""
