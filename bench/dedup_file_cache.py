"""What the file cache saves: an unchanged second backup with and without it.

Makes a tree of a few large files (random bytes, ``--mb`` in all, in files of
``--file-mb``) and 2,000 small ones, and a format 2 repository on a local
folder, then runs ``backupctl apply`` (the installed CLI, a new process each
time, as a timer would) four times a day apart:

* first: everything read and stored;
* cached: unchanged, the cache the first run left;
* fresh: unchanged, an empty cache folder (a new backup host);
* cached again: unchanged, the cache the fresh run left;
* nothing due: the same time again, no backup (the process's fixed cost).

The tree stays in the page cache throughout (so "read" is memory bandwidth
plus chunking and hashing, the best case for reading; a cold disk makes the
cache's gain larger). Prints each run's seconds and what it added to the
storage. ``python -m bench.dedup_file_cache [--mb N] [--file-mb N]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

KEYS = Path(__file__).resolve().parents[1] / "examples" / "keys"
MB = 1_000_000
CONFIG = """\
apiVersion: backupctl/v1
kind: BackupConfiguration
metadata:
  name: cache-bench
spec:
  storage:
    local: {{path: {repository}}}
  encryption:
    certificate: {{file: {certificate}}}
  schedule:
    enabled: true
    frequencyHours: 12
  retention:
    days: 30
  sources:
    - name: tree
      files: {{path: {tree}}}
"""


def make_tree(tree: Path, total_mb: int, file_mb: int) -> None:
    (tree / "small").mkdir(parents=True)
    for n in range(2000):
        (tree / "small" / f"doc-{n:04}.json").write_bytes(os.urandom(2000))
    for n in range(max(1, total_mb // file_mb)):
        with (tree / f"large-{n:02}.bin").open("wb") as out:
            for _ in range(file_mb):
                out.write(os.urandom(MB))


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def apply(config: Path, day: int, cache: Path) -> float:
    env = {**os.environ, "BACKUPCTL_CACHE_DIR": str(cache)}
    now = f"2026-12-{day:02}T12:00:00Z"
    started = time.perf_counter()
    subprocess.run(
        [shutil.which("backupctl") or "backupctl", "apply", "-f", str(config), "--now", now],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=500, help="MB of large files")
    parser.add_argument("--file-mb", type=int, default=50, help="MB per large file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="backupctl-cache-bench-") as scratch:
        root = Path(scratch)
        tree, repository = root / "tree", root / "repository"
        make_tree(tree, args.mb, args.file_mb)
        repository.mkdir()
        shutil.copy(KEYS / "demo-backup.cer", root / "backup.cer")
        config = root / "bench.yaml"
        config.write_text(
            textwrap.dedent(
                CONFIG.format(repository=repository, certificate=root / "backup.cer", tree=tree)
            )
        )
        print(f"tree: {folder_bytes(tree) / MB:.0f} MB, page cache warm", flush=True)
        runs = (("first", 1, "cache"), ("cached", 2, "cache"), ("fresh", 3, "fresh"))
        for name, day, cache in (*runs, ("cached again", 4, "fresh"), ("nothing due", 4, "fresh")):
            before = folder_bytes(repository)
            seconds = apply(config, day, root / cache)
            added = folder_bytes(repository) - before
            print(f"{name:>13}: {seconds:6.2f} s, storage +{added / MB:8.2f} MB", flush=True)


if __name__ == "__main__":
    sys.exit(main())
