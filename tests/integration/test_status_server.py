"""The status page and its API over real HTTP, from a daemon loop that made
real backups into real repositories (a folder, Samba, the Azure emulator)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.cli.main import cli
from reconciler.daemon.clock import SystemClock
from reconciler.daemon.health import Health
from reconciler.daemon.logs import EventLog
from reconciler.daemon.loop import Daemon
from reconciler.daemon.metrics import DaemonMetrics
from reconciler.daemon.pages import StatusPages
from reconciler.daemon.server import HttpServer, read_token_file
from reconciler.errors import BackupctlError
from reconciler.repository.store import Repository
from reconciler.storage.local import LocalStorage
from reconciler.timeutil import compact
from tests.azure_emulator import AzureFilesEmulator
from tests.plant import plant_catalog
from tests.servers.samba import SambaServer
from tests.unit.html_tree import parse

DEMO_CERT = Path(__file__).resolve().parents[2] / "examples" / "keys" / "demo-backup.cer"
TOKEN = "s3cret-token-for-the-page"
HOSTILE = "<script>alert(1)</script>\"'><img src=x onerror=alert(2)>"

CONFIG = """\
apiVersion: backupctl/v1
kind: BackupConfiguration
metadata:
  name: {name}
spec:
  storage:
{storage}
  encryption:
    certificate: {{file: backup.cer}}
  schedule:
    frequencyHours: 12
  sources:
    - name: settings
      files: {{path: data}}
{extra}"""

LOCAL = "    local: {{path: ../storage}}"


@dataclass
class Site:
    root: Path

    @property
    def configs(self) -> Path:
        return self.root / "configs"

    def write(self, name: str, storage: str | None = None, extra: str = "") -> None:
        text = CONFIG.format(name=name, storage=storage or LOCAL.format(name=name), extra=extra)
        (self.configs / f"{name}.yaml").write_text(text)

    def daemon(self) -> Daemon:
        log = EventLog(io.StringIO(), json_lines=True)
        return Daemon(self.configs, 300, SystemClock(), log, DaemonMetrics(), jitter=0)


@pytest.fixture
def site(tmp_path: Path) -> Site:
    (tmp_path / "configs" / "data").mkdir(parents=True)
    (tmp_path / "storage").mkdir()
    (tmp_path / "configs" / "data" / "region.json").write_text('{"region": "west"}\n')
    shutil.copy(DEMO_CERT, tmp_path / "configs" / "backup.cer")
    return Site(tmp_path)


@dataclass
class Served:
    base: str
    daemon: Daemon
    server: HttpServer


def serve(daemon: Daemon, token: str | None = None, host: str = "127.0.0.1") -> HttpServer:
    pages = StatusPages(daemon.state.snapshot, SystemClock().now, cache_seconds=0)
    health = Health(stalled_after=900)
    server = HttpServer(host, 0, DaemonMetrics().exposition, health, pages, token)
    server.start()
    return server


@pytest.fixture
def served(site: Site) -> Iterator[Served]:
    site.write("region-west", extra=failing_source(HOSTILE))
    daemon = site.daemon()
    daemon.load()
    daemon.tick()
    server = serve(daemon)
    yield Served(f"http://{server.address}", daemon, server)
    server.stop()


def failing_source(stderr: str) -> str:
    script = f"printf '%s\\n' {shell_quote(stderr)} >&2; exit 3"
    return f"    - name: vault\n      command: {{backup: [sh, -c, {json.dumps(script)}]}}\n"


def shell_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


@dataclass(frozen=True)
class Answer:
    code: int
    headers: dict[str, str]
    body: str


def request(
    url: str, method: str = "GET", token: str | None = None, raw_authorization: str | None = None
) -> Answer:
    req = urllib.request.Request(url, method=method)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    if raw_authorization is not None:
        req.add_header("Authorization", raw_authorization)
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return Answer(response.status, dict(response.headers), response.read().decode())
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, dict(exc.headers), exc.read().decode())


def catalog(site: Site, name: str) -> list[str]:
    repository = Repository(LocalStorage(site.root / "storage" / name), name)
    return [b.id for b in repository.read_catalog().backups]


# ------------------------------------------------------------------ routes


def test_the_pages_show_what_the_repository_holds(served: Served, site: Site) -> None:
    [backup_id] = catalog(site, "region-west")
    overview = request(f"{served.base}/")
    assert overview.code == 200 and overview.headers["Content-Type"].startswith("text/html")
    row = parse(overview.body).by_id("configurations").one("tr", data_configuration="region-west")
    assert row.one("td", cls="health").text in {"ok", "warning", "critical", "unknown"}
    page = parse(request(f"{served.base}/configurations/region-west").body)
    rows = page.by_id("backups").find_all("tr")
    assert [r.attrs["data-backup"] for r in rows if "data-backup" in r.attrs] == [backup_id]
    status = page.one("tr", data_backup=backup_id).one("td", cls="status").text
    assert status == "PartiallySucceeded"
    assert page.by_id("chart-size").tag == "svg" and page.by_id("chart-duration").tag == "svg"
    detail = parse(request(f"{served.base}/configurations/region-west/backups/{backup_id}").body)
    assert (
        detail.by_id("sources").one("tr", data_source="settings").one("td", cls="status").text
        == "Succeeded"
    )


def test_a_commands_stderr_is_shown_as_text_on_the_backup_page(served: Served, site: Site) -> None:
    [backup_id] = catalog(site, "region-west")
    answer = request(f"{served.base}/configurations/region-west/backups/{backup_id}")
    page = parse(answer.body)
    error = page.by_id("sources").one("tr", data_source="vault").one("td", cls="error")
    assert HOSTILE in error.text
    assert page.find_all("script") == [] and page.find_all("img") == []
    assert "<script>alert(1)" not in answer.body


def test_the_api_serves_the_same_data_as_versioned_json(served: Served, site: Site) -> None:
    [backup_id] = catalog(site, "region-west")
    status = request(f"{served.base}/api/v1/status")
    assert status.code == 200 and status.headers["Content-Type"] == "application/json"
    document = json.loads(status.body)
    assert document["apiVersion"] == "v1" and document["kind"] == "Status"
    assert [c["name"] for c in document["configurations"]] == ["region-west"]
    one = json.loads(request(f"{served.base}/api/v1/configurations/region-west?page=1").body)
    assert one["apiVersion"] == "v1" and one["configuration"]["name"] == "region-west"
    url = f"{served.base}/api/v1/configurations/region-west/backups/{backup_id}"
    backup = json.loads(request(url).body)
    assert backup["kind"] == "Backup" and backup["backup"]["id"] == backup_id
    missing = request(f"{served.base}/api/v1/configurations/nowhere")
    assert missing.code == 404 and json.loads(missing.body)["apiVersion"] == "v1"


@pytest.mark.parametrize(
    "path",
    [
        "/nowhere",
        "/configurations/nowhere",
        "/configurations/region-west/backups/20990101T000000Z-0000",
        "/configurations/region-west/extra",
        "/configurations/region-west?page=2",
        "/api/v1/nowhere",
        "/api/v1/",
    ],
)
def test_anything_else_is_not_found(served: Served, path: str) -> None:
    answer = request(f"{served.base}{path}")
    assert answer.code == 404
    assert "Traceback" not in answer.body


def test_a_page_number_that_is_no_number_is_a_bad_request(served: Served) -> None:
    for query in ("page=x", "page=0", "page=-1", "page=1.5"):
        answer = request(f"{served.base}/configurations/region-west?{query}")
        assert answer.code == 400, query
        assert "page must be a whole number" in answer.body


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
@pytest.mark.parametrize("path", ["/", "/api/v1/status", "/metrics"])
def test_nothing_but_get_and_head_is_allowed(served: Served, method: str, path: str) -> None:
    answer = request(f"{served.base}{path}", method=method)
    assert answer.code == 405 and answer.headers["Allow"] == "GET, HEAD"


def test_head_answers_the_headers_of_get_without_the_body(served: Served) -> None:
    get = request(f"{served.base}/")
    host, port = served.server.address.rsplit(":", 1)
    # A raw socket: an HTTP client would not read a body after HEAD even if one came.
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(b"HEAD / HTTP/1.0\r\n\r\n")
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200") and body == b""
    assert f"Content-Length: {len(get.body.encode())}".encode() in head


def test_the_served_policy_admits_exactly_the_served_stylesheet(served: Served) -> None:
    answer = request(f"{served.base}/configurations/region-west")
    css = parse(answer.body).one("style").text
    digest = base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
    policy = answer.headers["Content-Security-Policy"]
    assert f"style-src 'sha256-{digest}'" in policy
    assert policy.startswith("default-src 'none';") and "script-src" not in policy
    assert "frame-ancestors 'none'" in policy
    assert answer.headers["X-Content-Type-Options"] == "nosniff"


# ------------------------------------------------------------------ the token


def test_with_a_token_every_page_needs_it_but_metrics_and_health_stay_open(site: Site) -> None:
    site.write("region-west")
    daemon = site.daemon()
    daemon.load()
    server = serve(daemon, token=TOKEN)
    base = f"http://{server.address}"
    try:
        for path in ("/", "/configurations/region-west", "/api/v1/status", "/nowhere"):
            denied = request(f"{base}{path}")
            assert denied.code == 401, path
            assert denied.headers["WWW-Authenticate"].startswith("Bearer")
            assert request(f"{base}{path}", token="wrong").code == 401
            assert request(f"{base}{path}", raw_authorization=f"Basic {TOKEN}").code == 401
            assert request(f"{base}{path}", raw_authorization=TOKEN).code == 401
            assert request(f"{base}{path}", token=TOKEN[:-1]).code == 401
        assert request(f"{base}/", token=TOKEN).code == 200
        assert request(f"{base}/api/v1/status", token=TOKEN).code == 200
        assert request(f"{base}/nowhere", token=TOKEN).code == 404
        assert request(f"{base}/metrics").code == 200
        assert request(f"{base}/healthz").code in (200, 503)  # open: the loop is not running
    finally:
        server.stop()


def test_off_loopback_the_token_is_enforced(site: Site) -> None:
    site.write("region-west")
    daemon = site.daemon()
    daemon.load()
    server = serve(daemon, token=TOKEN, host="0.0.0.0")
    port = server.address.rsplit(":", 1)[1]
    try:
        assert request(f"http://127.0.0.1:{port}/").code == 401
        assert request(f"http://127.0.0.1:{port}/", token=TOKEN).code == 200
        assert request(f"http://127.0.0.1:{port}/metrics").code == 200
    finally:
        server.stop()


def test_off_loopback_without_a_token_the_server_refuses_to_start(site: Site) -> None:
    with pytest.raises(BackupctlError, match="--auth-token-file") as caught:
        serve(site.daemon(), host="0.0.0.0")
    assert "\n" not in str(caught.value)


def test_the_daemon_command_refuses_an_unguarded_public_address(site: Site) -> None:
    site.write("region-west")
    result = CliRunner().invoke(cli, ["daemon", "-f", str(site.configs), "--listen", "0.0.0.0:0"])
    assert result.exit_code != 0
    assert "--auth-token-file" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_the_token_file_is_read_once_stripped_and_must_hold_something(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(f"  {TOKEN}\n")
    assert read_token_file(path) == TOKEN
    path.write_text(" \n")
    with pytest.raises(BackupctlError, match="is empty"):
        read_token_file(path)
    with pytest.raises(BackupctlError, match="cannot read the token file"):
        read_token_file(tmp_path / "missing")


def test_the_daemon_command_says_so_when_the_token_file_is_empty(site: Site) -> None:
    site.write("region-west")
    (site.root / "token").write_text("\n")
    result = CliRunner().invoke(
        cli,
        ["daemon", "-f", str(site.configs), "--listen", "0.0.0.0:0",
         "--auth-token-file", str(site.root / "token")],
    )  # fmt: skip
    assert result.exit_code != 0 and "is empty" in result.output
    assert "Traceback" not in result.output


# ------------------------------------------------------------------ the loop


def test_a_page_answers_at_once_while_the_loop_is_making_a_backup(site: Site) -> None:
    gate = site.root / "release"
    script = f"while [ ! -e {gate} ]; do sleep 0.05; done; echo data"
    extra = f"    - name: slow\n      command: {{backup: [sh, -c, {json.dumps(script)}]}}\n"
    site.write("region-west", extra=extra)
    daemon = site.daemon()
    daemon.load()
    server = serve(daemon)
    base = f"http://{server.address}"
    loop = threading.Thread(target=daemon.tick)
    loop.start()
    try:
        deadline = time.monotonic() + 30
        while daemon.state.snapshot().activity.get("region-west") is None or (
            daemon.state.snapshot().activity["region-west"].running is None
        ):
            assert time.monotonic() < deadline, "the backup never started"
            time.sleep(0.05)
        start = time.monotonic()
        answer = request(f"{base}/configurations/region-west")
        elapsed = time.monotonic() - start
        assert answer.code == 200 and elapsed < 1.0, f"{elapsed:.2f} s"
        running = parse(answer.body).by_id("running")
        assert running.one("progress") and "Running" in running.text
        assert loop.is_alive(), "the backup was still in progress while the page answered"
    finally:
        gate.write_text("go")
        loop.join(60)
        server.stop()
    page = parse(request_after_stop(daemon))
    assert page.find_all("section", id="running") == []


def request_after_stop(daemon: Daemon) -> str:
    server = serve(daemon)
    try:
        return request(f"http://{server.address}/configurations/region-west").body
    finally:
        server.stop()


def test_with_10000_backups_a_page_answers_in_well_under_a_second(site: Site) -> None:
    site.write("region-west")
    daemon = site.daemon()
    daemon.load()
    daemon.tick()
    repository = Repository(LocalStorage(site.root / "storage" / "region-west"), "region-west")
    [real] = repository.read_catalog().backups
    records = []
    for index in range(9_999, 0, -1):
        created = real.created_at - timedelta(hours=index)
        records.append(replace(real, id=f"{compact(created)}-{index:06x}", created_at=created))
    plant_catalog(repository, (*records, real))
    server = serve(daemon)
    base = f"http://{server.address}"
    try:
        timings = {}
        for path in ("/", "/configurations/region-west?page=150", "/api/v1/status"):
            runs = []
            for _ in range(3):  # the best of three: the machine is shared, a pause is not ours
                start = time.perf_counter()
                answer = request(f"{base}{path}")
                runs.append(time.perf_counter() - start)
                assert answer.code == 200, path
            timings[path] = min(runs)
        page = parse(request(f"{base}/configurations/region-west?page=150").body)
        assert len(page.by_id("backups").find_all("tr", cls=None)) == 51  # header + 50
        assert "Page 150 of 200" in page.text
        assert page.one("a", rel="next").attrs["href"] == "?page=151"
        assert max(timings.values()) < 0.5, timings
    finally:
        server.stop()


# ------------------------------------------------------------------ secrets


def test_no_secret_appears_on_any_page_or_in_the_api(
    site: Site,
    samba_server: SambaServer,
    azure_emulator: AzureFilesEmulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STATUS_SMB_PASSWORD", samba_server.password)
    monkeypatch.setenv("STATUS_AZURE_KEY", azure_emulator.account_key)
    site.write(
        "offsite-smb",
        "    smb:\n"
        f"      path: //127.0.0.1/backups/status-{time.time_ns()}\n"
        f"      port: {samba_server.port}\n"
        f"      username: {samba_server.username}\n"
        "      password: {env: STATUS_SMB_PASSWORD}",
    )
    site.write(
        "offsite-azure",
        "    azureFileShare:\n"
        f"      accountUrl: {azure_emulator.account_url}\n"
        "      share: backups\n"
        f"      directory: status-{time.time_ns()}\n"
        "      auth:\n"
        "        accountKey: {env: STATUS_AZURE_KEY}",
    )
    daemon = site.daemon()
    daemon.load()
    daemon.tick()
    server = serve(daemon)
    base = f"http://{server.address}"
    secrets = [samba_server.password, azure_emulator.account_key]
    try:
        paths = ["/", "/api/v1/status"]
        for name in ("offsite-smb", "offsite-azure"):
            document = json.loads(request(f"{base}/api/v1/configurations/{name}").body)
            ids = [b["id"] for b in document["configuration"]["backups"]["items"]]
            assert ids, f"{name} made a backup: {document}"
            paths += [f"/configurations/{name}", f"/api/v1/configurations/{name}"]
            paths += [f"/configurations/{name}/backups/{ids[0]}"]
            paths += [f"/api/v1/configurations/{name}/backups/{ids[0]}"]
        for path in paths:
            body = request(f"{base}{path}").body
            for secret in secrets:
                assert secret not in body, path
                assert base64.b64decode(azure_emulator.account_key).hex() not in body
    finally:
        server.stop()


# ------------------------------------------------------------------ the snapshot


def test_status_output_html_is_the_page_in_one_self_contained_file(site: Site) -> None:
    site.write("region-west", extra=failing_source(HOSTILE))
    daemon = site.daemon()
    daemon.load()
    daemon.tick()
    [backup_id] = catalog(site, "region-west")
    result = CliRunner().invoke(cli, ["status", "-f", str(site.configs), "--output", "html"])
    assert result.exit_code == 0, result.output
    page = parse(result.output)
    policy = page.one("meta", http_equiv="Content-Security-Policy").attrs["content"]
    css = page.one("style").text
    digest = base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in policy and "script-src" not in policy
    row = page.by_id("configurations").one("tr", data_configuration="region-west")
    assert row.one("a").attrs["href"] == "#configuration-region-west"
    section = page.by_id(f"backup-region-west-{backup_id}")
    error = section.one("tr", data_source="vault").one("td", cls="error")
    assert HOSTILE in error.text and page.find_all("script") == []
