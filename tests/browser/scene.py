"""What the status page shows in the tests and in the README's picture: a
region with a few days of backups, made by the real CLI."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

from tests.e2e.region import Region

# A configuration whose command source fails every time, with ``stderr`` as
# the last line of its stderr (what the page shows as the source's error).
FAILING_CONFIGURATION = """\
---
apiVersion: backupctl/v1
kind: BackupConfiguration
metadata:
  name: inventory
spec:
  storage:
    local:
      path: ../.backups
  encryption:
    certificate: {file: keys/demo-backup.cer}
  schedule: {enabled: true, frequencyHours: 12}
  sources:
    - name: root-ca
      files: {path: stamp/ca}
    - name: hosts
      command:
        backup: [./stamp/bin/inventory]
"""

FAILING_SCRIPT = """\
#!/bin/sh
echo "listing hosts"
cat >&2 <<'END'
{stderr}
END
exit 3
"""

# Every 13 hours, as a 12-hour schedule would have made them; the newest an
# hour ago, so that the daemon has nothing due but inventory's retry.
HOURS_AGO = (66, 53, 40, 27, 14, 1)


def add_failing_configuration(region: Region, stderr: str) -> None:
    """Add the ``inventory`` configuration, whose ``hosts`` command prints ``stderr``."""
    script = region.root / "examples" / "stamp" / "bin" / "inventory"
    script.write_text(FAILING_SCRIPT.format(stderr=stderr))
    script.chmod(0o755)
    region.config.write_text(region.config.read_text() + FAILING_CONFIGURATION)


def make_history(region: Region, env: dict[str, str]) -> None:
    """A few days of backups by ``backupctl apply --now``, the deployment
    growing each time (so that the size chart climbs)."""
    growing = region.root / "examples" / "stamp" / "deployment" / "release-notes.txt"
    for step, hours_ago in enumerate(HOURS_AGO):
        notes = (f"change {step}.{n}: {os.urandom(24).hex()}\n" for n in range(400 * step))
        growing.write_text("".join(notes))
        result = region.run("apply", "-f", region.config, "--now", ago(hours_ago), env=env)
        assert "Traceback" not in result.text and result.code in (0, 1), result.text


def ago(hours: int) -> str:
    return (datetime.now(UTC) - timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")
