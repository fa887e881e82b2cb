"""/healthz and /metrics over real HTTP, with the health clock under the test's control."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from reconciler.daemon.health import Health
from reconciler.daemon.metrics import DaemonMetrics, ReconcileResult
from reconciler.daemon.server import HttpServer


class Monotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
def served() -> Iterator[tuple[str, Health, Monotonic, DaemonMetrics]]:
    clock = Monotonic()
    health = Health(stalled_after=90, monotonic=clock)
    metrics = DaemonMetrics()
    server = HttpServer("127.0.0.1", 0, metrics.exposition, health)
    server.start()
    yield f"http://{server.address}", health, clock, metrics
    server.stop()


def test_healthz_is_200_while_the_loop_makes_progress_and_503_once_it_stalls(
    served: tuple[str, Health, Monotonic, DaemonMetrics],
) -> None:
    base, health, clock, _ = served
    assert get(f"{base}/healthz")[0] == 503, "not running yet"
    health.started()
    clock.now += 60
    code, body = get(f"{base}/healthz")
    assert code == 200 and json.loads(body)["status"] == "ok"
    clock.now += 60  # 120 s without progress, over three 30 s intervals
    code, body = get(f"{base}/healthz")
    assert code == 503 and json.loads(body)["status"] == "stalled"
    health.beat()  # a byte written to the storage counts as progress
    assert get(f"{base}/healthz")[0] == 200
    health.stopped()
    code, body = get(f"{base}/healthz")
    assert code == 503 and json.loads(body)["status"] == "stopped"


def test_metrics_come_from_the_daemons_own_registry(
    served: tuple[str, Health, Monotonic, DaemonMetrics],
) -> None:
    base, _, _, metrics = served
    metrics.reconciled("region-west", ReconcileResult.LOCKED, None, storage_ok=True)
    code, text = get(f"{base}/metrics")
    assert code == 200
    assert 'backupctl_reconcile_total{configuration="region-west",result="locked"} 1.0' in text
    assert "python_gc_objects_collected_total" not in text, "not the global registry"
    assert get(f"{base}/other")[0] == 404
