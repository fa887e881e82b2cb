pytest_plugins = [
    "tests.servers.fixtures",
    "tests.storage.backend_smb",
    "tests.storage.backend_azure",
]
