import pytest

pytest_plugins = [
    "tests.servers.fixtures",
    "tests.storage.backend_smb",
    "tests.storage.backend_azure",
]


@pytest.fixture(autouse=True)
def _own_file_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each test (and each CLI it runs) has its own empty file cache folder,
    never the home folder's."""
    monkeypatch.setenv("BACKUPCTL_CACHE_DIR", str(tmp_path_factory.mktemp("file-cache")))
