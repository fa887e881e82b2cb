"""A throwaway Samba server for tests, independent of pytest.

``SambaServer`` runs ``smbd`` in the foreground from a private configuration
in a temporary folder: its own passdb, lock, state, cache and pid folders, one
user with a known password, a writable share ``backups`` and a read-only share
``readonly``, listening on 127.0.0.1 only on a free port. It needs root (smbd
switches to the share user per connection) and the ``samba`` package.

Quirks this works around (see /work/shared/SDK-NOTES.md):

* smbd acts as the share's user, so every folder on the way to a share must be
  traversable by that user: a ``mkdtemp`` folder is 0700 and is opened up here.
* smbd is started WITHOUT ``--no-process-group``: it then calls ``setsid()``
  and leads its own process group, which ``stop()`` signals as a whole (the
  per-connection children included) without touching the test runner's group.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

TEST_USER = "backupctl-test"
"""The Unix (and Samba) user the test shares are accessed as."""

SHARES = {"backups": False, "readonly": True}
"""Share name -> read only."""


def find_smbd() -> str | None:
    """Path of the smbd binary, or None when Samba is not installed.

    /usr/sbin is searched too: it is often missing from a non-root PATH."""
    return shutil.which("smbd") or shutil.which("smbd", path="/usr/sbin:/usr/local/sbin")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def ensure_unix_user(name: str = TEST_USER) -> None:
    """Create the dedicated system user ``name`` if it does not exist.

    Raises RuntimeError when useradd fails (for example when not root)."""
    try:
        pwd.getpwnam(name)
        return
    except KeyError:
        pass
    useradd = shutil.which("useradd") or shutil.which("useradd", path="/usr/sbin:/sbin")
    if useradd is None:
        raise RuntimeError(f"cannot create the Unix user {name}: useradd is not installed")
    result = subprocess.run(
        [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        capture_output=True,
        text=True,
        check=False,
    )
    # Exit code 9 means the user appeared meanwhile (another test session).
    if result.returncode not in (0, 9):
        raise RuntimeError(f"cannot create the Unix user {name}: {result.stderr.strip()}")


def _group_alive(group: int) -> bool:
    """True while a process of ``group`` runs (zombies do not count).

    smbd's helpers become zombies when it exits; in a container whose init
    does not reap them they would stay forever, so /proc is read where it
    exists instead of trusting that signal 0 fails."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return False
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the command (which may contain spaces): state ppid pgrp.
        state, _ppid, pgrp = stat.rsplit(")", 1)[1].split()[:3]
        if int(pgrp) == group and state not in ("Z", "X"):
            return True
    return False


class SambaServer:
    """One smbd process serving the shares ``backups`` and ``readonly``.

    Attributes ``host``, ``port``, ``username`` and ``password`` say how to
    connect. ``start()`` and ``stop()`` may be called repeatedly; the port and
    the share contents survive a restart. ``cleanup()`` removes the folder."""

    def __init__(
        self,
        *,
        port: int | None = None,
        password: str | None = None,
        base_dir: Path | None = None,
        start_timeout: float = 60.0,
        options: dict[str, str] | None = None,
    ) -> None:
        self.host = "127.0.0.1"
        self.port = port if port is not None else free_port()
        self.username = TEST_USER
        self.password = password if password is not None else f"Pw-{secrets.token_urlsafe(12)}"
        self.start_timeout = start_timeout
        # Extra or overriding [global] settings, e.g. {"server max protocol": "SMB2_10"}.
        self.options = dict(options or {})
        self._own_dir = base_dir is None
        self.base_dir = base_dir or Path(tempfile.mkdtemp(prefix="backupctl-samba-"))
        self.config_path = self.base_dir / "smb.conf"
        self.log_path = self.base_dir / "log" / "smbd.log"
        self._stdout_path = self.base_dir / "log" / "smbd.stdout"
        self._process: subprocess.Popen[bytes] | None = None
        self._prepared = False

    # -- layout -------------------------------------------------------------

    def share_path(self, name: str) -> Path:
        """The local folder behind share ``name``. Raises KeyError if unknown."""
        if name not in SHARES:
            raise KeyError(f"no test share named {name}")
        return self.base_dir / "shares" / name

    def _prepare(self) -> None:
        """Create folders, the configuration, the Unix user and the passdb entry.

        Raises RuntimeError when the user or the passdb entry cannot be made."""
        if self._prepared:
            return
        # smbd serves the shares as TEST_USER: the mkdtemp folder (0700) must
        # be traversable, the writable share writable by that user.
        self.base_dir.chmod(0o755)
        for sub in ("private", "lock", "state", "cache", "pid", "ncalrpc", "log"):
            (self.base_dir / sub).mkdir(mode=0o700, exist_ok=True)
        (self.base_dir / "shares").mkdir(mode=0o755, exist_ok=True)
        for name, read_only in SHARES.items():
            path = self.share_path(name)
            path.mkdir(exist_ok=True)
            path.chmod(0o755 if read_only else 0o777)
        self.config_path.write_text(self._config_text())
        ensure_unix_user(self.username)
        self._smbpasswd(["-a", "-s", self.username], self.password)
        self._prepared = True

    def _config_text(self) -> str:
        """The smb.conf text: everything private to base_dir, loopback only."""
        d = self.base_dir
        lines = [
            "[global]",
            "server role = standalone server",
            "security = user",
            f"passdb backend = tdbsam:{d / 'private' / 'passdb.tdb'}",
            f"private dir = {d / 'private'}",
            f"lock directory = {d / 'lock'}",
            f"state directory = {d / 'state'}",
            f"cache directory = {d / 'cache'}",
            f"pid directory = {d / 'pid'}",
            f"ncalrpc dir = {d / 'ncalrpc'}",
            f"log file = {self.log_path}",
            "max log size = 0",
            "log level = 1",
            f"smb ports = {self.port}",
            "interfaces = 127.0.0.1",
            "bind interfaces only = yes",
            "disable netbios = yes",
            "server min protocol = SMB2_10",
            "server smb encrypt = desired",
            "map to guest = never",
            "load printers = no",
            "printing = bsd",
            "printcap name = /dev/null",
            "disable spoolss = yes",
            # Named-pipe helpers (samba-dcerpcd) are not needed by the client
            # and would be one more process to manage.
            "rpc start on demand helpers = no",
            "obey pam restrictions = no",
            "unix password sync = no",
            # Later lines win in smb.conf, so these override the defaults above.
            *(f"{name} = {value}" for name, value in self.options.items()),
            "",
        ]
        for name, read_only in SHARES.items():
            lines += [
                f"[{name}]",
                f"path = {self.share_path(name)}",
                f"read only = {'yes' if read_only else 'no'}",
                f"valid users = {self.username}",
                "",
            ]
        return "\n".join(lines)

    def _smbpasswd(self, args: list[str], password: str) -> None:
        """Run smbpasswd against this server's private passdb.

        Raises RuntimeError (without the password) when it fails."""
        smbpasswd = shutil.which("smbpasswd") or shutil.which("smbpasswd", path="/usr/sbin")
        if smbpasswd is None:
            raise RuntimeError("smbpasswd is not installed (apt-get install samba)")
        # -s reads the new password twice from stdin.
        result = subprocess.run(
            [smbpasswd, "-c", str(self.config_path), *args],
            input=f"{password}\n{password}\n",
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            output = (result.stdout + result.stderr).replace(password, "***").strip()
            raise RuntimeError(f"smbpasswd failed: {output}")

    def set_password(self, new: str) -> None:
        """Change the user's password; a running smbd sees it on the next logon.

        Raises RuntimeError when smbpasswd fails."""
        self._prepare()
        self._smbpasswd(["-s", self.username], new)
        self.password = new

    # -- process ------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True while the smbd process started by ``start()`` is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start smbd and wait until it accepts connections.

        Raises RuntimeError, with the tail of its log, when smbd is missing,
        exits, or does not listen within ``start_timeout`` seconds."""
        if self.running:
            return
        smbd = find_smbd()
        if smbd is None:
            raise RuntimeError("smbd is not installed (apt-get install samba)")
        self._prepare()
        with self._stdout_path.open("ab") as out:
            # -F: stay in the foreground so we own the process. No
            # --no-process-group: smbd then leads its own process group.
            self._process = subprocess.Popen(
                [smbd, "-F", "-s", str(self.config_path), "--debuglevel=1"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            self._wait_until_listening()
        except RuntimeError:
            self.stop()
            raise

    def _wait_until_listening(self) -> None:
        """Poll the port until it accepts a connection.

        Raises RuntimeError when smbd exits or the timeout passes."""
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"smbd exited with code {self._process.returncode}:\n{self.log_tail()}"
                )
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, self.port), timeout=0.5),
            ):
                return
            time.sleep(0.1)
        raise RuntimeError(
            f"smbd did not listen on {self.host}:{self.port} within "
            f"{self.start_timeout:.0f} s:\n{self.log_tail()}"
        )

    def stop(self, timeout: float = 10.0) -> None:
        """Stop smbd and all its per-connection children; idempotent.

        Connections of clients are cut (their sockets close)."""
        process, self._process = self._process, None
        if process is None:
            return
        group = self._own_group(process)
        self._signal(process, group, signal.SIGTERM)
        if not self._wait_gone(process, group, timeout):
            self._signal(process, group, signal.SIGKILL)
            self._wait_gone(process, group, timeout)

    @staticmethod
    def _own_group(process: subprocess.Popen[bytes]) -> int | None:
        """smbd's process group when it leads its own one, else None.

        Right after Popen smbd may not have called setsid() yet; it then still
        shares the test runner's group, which must never be signalled."""
        try:
            group = os.getpgid(process.pid)
        except ProcessLookupError:
            return None
        if group == process.pid and group != os.getpgrp():
            return group
        return None

    @staticmethod
    def _signal(process: subprocess.Popen[bytes], group: int | None, sig: int) -> None:
        """Send ``sig`` to smbd's own process group, or to smbd alone."""
        try:
            if group is not None:
                os.killpg(group, sig)
            else:
                process.send_signal(sig)
        except ProcessLookupError:
            pass

    @staticmethod
    def _wait_gone(process: subprocess.Popen[bytes], group: int | None, timeout: float) -> bool:
        """Wait until smbd is reaped and its group is empty; False on timeout."""
        deadline = time.monotonic() + timeout
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        while group is not None and time.monotonic() < deadline:
            if not _group_alive(group):
                return True
            time.sleep(0.05)
        return group is None

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of smbd's log and console output."""
        text = ""
        for path in (self._stdout_path, self.log_path):
            with contextlib.suppress(OSError):
                text += path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:]) or "(smbd logged nothing)"

    def cleanup(self) -> None:
        """Stop smbd and remove the temporary folder if this object made it."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> SambaServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.cleanup()
