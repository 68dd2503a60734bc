"""Run directories: ``runs/<UTC yyyymmddThhmmssZ>-<6 hex>/`` with ``runs/latest`` at the newest.

Files a run directory may hold (DESIGN.md, "Run directory"), named here so that every component
writes and reads the same paths:

- ``config.json``        resolved options, no secrets
- ``endpoints.json``     URLs (and pids) of the embedded endpoint while it runs
- ``ledger.sqlite``      every producer write attempt (loadgen)
- ``claims.jsonl``       every watermark claim of the replicator (wall time, W)
- ``observed-claims.jsonl`` every watermark value seen in the target's checkpoint table (verify)
- ``faults.jsonl``       every fault the embedded endpoint injected
- ``replicator-*.log``   replicator logs; ``replicator-metrics.json`` its counters
- ``verify.sqlite``, ``report.json``, ``report.html``  (verify)
"""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from xrh.errors import UsageError

CONFIG_FILE = "config.json"
ENDPOINTS_FILE = "endpoints.json"
LEDGER_FILE = "ledger.sqlite"
CLAIMS_FILE = "claims.jsonl"
OBSERVED_CLAIMS_FILE = "observed-claims.jsonl"
FAULTS_FILE = "faults.jsonl"
METRICS_FILE = "replicator-metrics.json"
VERIFY_STORE_FILE = "verify.sqlite"
REPORT_JSON = "report.json"
REPORT_HTML = "report.html"
LATEST = "latest"


@dataclass(frozen=True, slots=True)
class RunDir:
    path: Path

    @property
    def run_id(self) -> str:
        return self.path.name

    def file(self, name: str) -> Path:
        return self.path / name

    def write_json(self, name: str, payload: Any) -> Path:
        """Write atomically (temp file, then rename) so readers never see half a file."""
        target = self.file(name)
        tmp = target.with_suffix(target.suffix + f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
        os.replace(tmp, target)
        return target

    def read_json(self, name: str) -> Any:
        return json.loads(self.file(name).read_text())


def new_run_id(now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"


def create_run(runs_dir: Path, config_public: dict[str, Any] | None = None) -> RunDir:
    """Make a new run directory, write ``config.json`` and point ``latest`` at it."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    for _ in range(10):
        path = runs_dir / new_run_id()
        try:
            path.mkdir()
            break
        except FileExistsError:
            time.sleep(0.01)
    else:  # pragma: no cover - ten collisions of 24 random bits in one second
        raise UsageError(f"--runs-dir {runs_dir}: could not create a unique run directory")
    run = RunDir(path)
    if config_public is not None:
        run.write_json(CONFIG_FILE, config_public)
    point_latest(runs_dir, run)
    return run


def point_latest(runs_dir: Path, run: RunDir) -> None:
    """Atomically re-point ``runs/latest`` (a relative symlink) at ``run``."""
    link = runs_dir / LATEST
    tmp = runs_dir / f".{LATEST}.{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(run.path.name)
    os.replace(tmp, link)


def open_run(path: Path) -> RunDir:
    """An existing run directory (``runs/latest`` resolves to its target); UsageError if absent."""
    resolved = path.resolve()
    if not resolved.is_dir():
        raise UsageError(f"--run-dir {path}: no such run directory")
    return RunDir(resolved)
