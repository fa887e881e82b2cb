"""The benchmark's data set: generated from a seed, so every run backs up the same bytes.

Three kinds of data an infrastructure backup holds:

* ``config/``: many small JSON documents (resource-manager configuration) in
  nested folders, 200 B to 50 KB each, 11 KB on average;
* ``logs/frontend.log``: one large log-like text file, no two lines alike
  (timestamps, request ids, latencies), so it compresses like a real log and
  content-defined deduplication finds nothing to skip;
* ``blobs/random.bin``: incompressible data (key material, already-compressed
  archives), an AES-CTR key stream of the seed.

Every file gets a fixed mtime, so the same seed gives byte-identical trees.
A marker file records what was generated; a tree whose marker matches is
reused instead of generated again.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

GENERATOR_VERSION = 1
MARKER = ".bench-dataset.json"
MTIME_NS = 1_767_225_600_123_456_789  # 2026-01-01T00:00:00.123456789Z
MB = 1_000_000


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    small_files: int
    log_bytes: int
    random_bytes: int
    seed: int = 20261125

    @property
    def description(self) -> str:
        return (
            f"{self.small_files:,} small JSON files, a {self.log_bytes // MB:,} MB log file,"
            f" {self.random_bytes // MB:,} MB of random data"
        )


SPECS = {
    "smoke": DatasetSpec("smoke", small_files=500, log_bytes=20 * MB, random_bytes=10 * MB),
    "small": DatasetSpec("small", small_files=20_000, log_bytes=600 * MB, random_bytes=300 * MB),
    "large": DatasetSpec(
        "large", small_files=20_000, log_bytes=2_500 * MB, random_bytes=1_300 * MB
    ),
}


@dataclass(frozen=True)
class Dataset:
    spec: DatasetSpec
    root: Path
    files: int
    folders: int
    total_bytes: int


def ensure_dataset(spec: DatasetSpec, scratch: Path) -> Dataset:
    """The data set of ``spec`` under ``scratch``, generated unless already there."""
    root = scratch / f"data-{spec.name}"
    marker = root / MARKER
    wanted = {"generator": GENERATOR_VERSION, **asdict(spec)}
    if marker.exists():
        recorded = json.loads(marker.read_text())
        if {k: recorded.get(k) for k in wanted} == wanted:
            return Dataset(
                spec, root, recorded["files"], recorded["folders"], recorded["totalBytes"]
            )
    if root.exists():
        shutil.rmtree(root)
    tree = root / "data"
    tree.mkdir(parents=True)
    files, folders, total = _small_files(tree / "config", spec)
    total += _log_file(tree / "logs" / "frontend.log", spec)
    total += _random_file(tree / "blobs" / "random.bin", spec)
    files += 2
    folders += 3  # data, logs, blobs
    _fix_mtimes(tree)
    marker.write_text(
        json.dumps({**wanted, "files": files, "folders": folders, "totalBytes": total}, indent=2)
    )
    return Dataset(spec, root, files, folders, total)


_REGIONS = ["westeurope", "northeurope", "eastus", "westus2", "uksouth", "local"]
_KINDS = ["plan", "offer", "subscription", "quota", "roleAssignment", "keyVault", "network"]
_SKUS = ["Standard_D2s_v3", "Standard_D4s_v3", "Standard_F8s", "Basic_A1", "Premium_LRS"]
_STATES = ["Succeeded", "Updating", "Failed", "Deleting", "Canceled"]
_WORDS = [
    *("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india"),
    *("juliet", "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo"),
    *("sierra", "tango", "uniform", "victor", "whiskey", "xray", "yankee", "zulu"),
]


def _guid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _document(rng: random.Random, index: int) -> bytes:
    """One resource-manager-like JSON document, 200 B to about 50 KB."""
    kind = rng.choice(_KINDS)
    items = min(int(rng.lognormvariate(3.0, 1.0)), 150)
    doc = {
        "id": f"/subscriptions/{_guid(rng)}/providers/Microsoft.{kind}/{index}",
        "name": f"{kind}-{index:05d}",
        "kind": kind,
        "location": rng.choice(_REGIONS),
        "etag": f'W/"{rng.getrandbits(64):016x}"',
        "properties": {
            "provisioningState": rng.choice(_STATES),
            "displayName": " ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 5))),
            "quota": {"cores": rng.randint(1, 4096), "storageGb": rng.randint(1, 100_000)},
            "tags": {rng.choice(_WORDS): rng.choice(_WORDS) for _ in range(rng.randint(0, 6))},
            "items": [
                {
                    "id": _guid(rng),
                    "sku": rng.choice(_SKUS),
                    "enabled": rng.random() < 0.8,
                    "weight": round(rng.random() * 100, 3),
                    "owner": f"{rng.choice(_WORDS)}@contoso.com",
                }
                for _ in range(items)
            ],
        },
    }
    return json.dumps(doc, indent=2, sort_keys=True).encode()


def _small_files(folder: Path, spec: DatasetSpec) -> tuple[int, int, int]:
    """``spec.small_files`` JSON files, 100 per folder, two levels deep."""
    rng = random.Random(spec.seed)
    per_folder = 100
    groups = 10
    total = 0
    folders = 1
    for index in range(spec.small_files):
        bucket, _ = divmod(index, per_folder)
        sub = folder / f"subscription-{bucket // groups:03d}" / f"group-{bucket % groups:02d}"
        if index % per_folder == 0:
            new = not sub.parent.exists()
            sub.mkdir(parents=True)
            folders += 1 + (1 if new else 0)
        data = _document(rng, index)
        (sub / f"{index:05d}.json").write_bytes(data)
        total += len(data)
    return spec.small_files, folders, total


_LEVELS = ["INFO"] * 12 + ["DEBUG"] * 3 + ["WARN", "ERROR"]
_VERBS = ["GET"] * 6 + ["PUT", "PUT", "POST", "DELETE", "PATCH"]
_PATHS = [
    "/subscriptions/{g}/resourceGroups/rg-{n:03d}/providers/Microsoft.Compute/virtualMachines/vm-{m}",
    "/subscriptions/{g}/providers/Microsoft.Storage/storageAccounts/sa{m:05d}/listKeys",
    "/subscriptions/{g}/resourceGroups/rg-{n:03d}/providers/Microsoft.Network/networkInterfaces/nic-{m}",
    "/tenants/{g}/providers/Microsoft.Authorization/roleAssignments/{m}",
    "/subscriptions/{g}/providers/Microsoft.KeyVault/vaults/kv-{n:03d}/secrets/s{m}",
]
_STATUS = [200] * 20 + [201, 202, 204, 404, 409, 429, 500]
_AGENTS = ["arm-frontend", "arm-worker", "identity-sync", "kv-proxy", "metering"]


def _log_file(path: Path, spec: DatasetSpec) -> int:
    """``spec.log_bytes`` bytes of log lines, written in blocks."""
    path.parent.mkdir(parents=True)
    rng = random.Random(spec.seed + 1)
    subscriptions = [_guid(rng) for _ in range(400)]
    millis = 1_767_225_600_000
    written = 0
    with path.open("wb") as out:
        while written < spec.log_bytes:
            lines = []
            for _ in range(2000):
                bits = rng.getrandbits(64)
                millis += bits & 0x3F
                seconds, ms = divmod(millis, 1000)
                verb = _VERBS[(bits >> 6) % len(_VERBS)]
                route = _PATHS[(bits >> 10) % len(_PATHS)].format(
                    g=subscriptions[(bits >> 14) % 400], n=(bits >> 23) % 300, m=(bits >> 32) % 9973
                )
                lines.append(
                    f"{seconds}.{ms:03d} {_LEVELS[(bits >> 41) % len(_LEVELS)]:5}"
                    f" [{_AGENTS[(bits >> 46) % 5]}-{(bits >> 49) % 8}]"
                    f" req={rng.getrandbits(48):012x} {verb} {route}"
                    f" status={_STATUS[(bits >> 52) % len(_STATUS)]}"
                    f" latency_ms={(bits >> 57) + (bits & 0x1FF)}"
                    f" client=10.{(bits >> 8) & 0xFF}.{(bits >> 16) & 0xFF}.{(bits >> 24) & 0xFF}\n"
                )
            block = "".join(lines).encode()[: spec.log_bytes - written]
            out.write(block)
            written += len(block)
    return written


def _random_file(path: Path, spec: DatasetSpec) -> int:
    """``spec.random_bytes`` bytes of an AES-CTR key stream keyed by the seed."""
    path.parent.mkdir(parents=True)
    key = hashlib.sha256(f"backupctl bench {spec.seed}".encode()).digest()
    encryptor = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()
    zeros = bytes(8 * 1024 * 1024)
    written = 0
    with path.open("wb") as out:
        while written < spec.random_bytes:
            block = encryptor.update(zeros[: min(len(zeros), spec.random_bytes - written)])
            out.write(block)
            written += len(block)
    return written


def _fix_mtimes(tree: Path) -> None:
    """Give everything one fixed mtime (folders last, since writing into them changes it)."""
    folders = []
    for dirpath, _dirnames, filenames in os.walk(tree):
        folders.append(dirpath)
        for name in filenames:
            os.utime(os.path.join(dirpath, name), ns=(MTIME_NS, MTIME_NS))
    for dirpath in reversed(folders):
        os.utime(dirpath, ns=(MTIME_NS, MTIME_NS))
