"""A replicator process's files in the run directory: the claims log, the metrics file merged
across workers (under a lock, so workers of one run share one file) and its JSON log."""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any


class RunFiles:
    """Claims log, metrics file (merged across workers under a lock) and the JSON log."""

    def __init__(self, run_dir: Path, worker_id: str, behaviour: str | None = None) -> None:
        from xrh import runs

        self.claims = run_dir / runs.CLAIMS_FILE
        self.metrics = run_dir / runs.METRICS_FILE
        self.log_path = run_dir / f"replicator-{worker_id}.log"
        self.worker_id = worker_id
        self.behaviour = behaviour  # a label carried by every line ("sample behaviour")
        self._log = self.log_path.open("a", buffering=1)

    def log(self, event: str, **fields: Any) -> None:
        line = {"ts": int(time.time() * 1000), "worker": self.worker_id, "event": event}
        if self.behaviour:
            line["behaviour"] = self.behaviour
        line.update(fields)
        self._log.write(json.dumps(line, default=str) + "\n")

    def emf(self, line: str) -> None:
        self._log.write(line + "\n")

    def append_claim(self, line: str) -> None:
        fd = os.open(self.claims, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    def write_metrics(self, snapshot: dict[str, Any]) -> None:
        lock = self.metrics.with_suffix(".lock")
        with lock.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                data = json.loads(self.metrics.read_text()) if self.metrics.exists() else {}
            except ValueError:
                data = {}
            workers = data.setdefault("workers", {})
            workers[self.worker_id] = snapshot
            if snapshot.get("behaviour"):
                data["behaviour"] = snapshot["behaviour"]
            totals: dict[str, int] = {}
            for w in workers.values():
                for k, v in w.get("counters", {}).items():
                    totals[k] = totals.get(k, 0) + v
            data["totals"] = totals
            tmp = self.metrics.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
            os.replace(tmp, self.metrics)

    def close(self) -> None:
        self._log.close()
