"""What the web UI's replication tab shows, sampled once a second for the whole run.

The page used to keep its chart's points in the browser, from when it was opened, and fetched
``status.json`` relative to ``/xrh``, which resolves to ``/status.json`` (a 404): opened at
``/xrh`` it showed nothing, opened 20 s into a run at ``/xrh/`` it showed one point. Here the
Locust process (the local runner or the master: where the run directory, the ledger and the
replicator's metrics are) keeps the history from the run's start, so a page opened at any time
draws all of it.

Each sample reads: the ledger's acknowledged count (produced), the replicator's metrics file
(records copied, each shard's lag of its last copy, the published watermark), and the new
lines of ``faults.jsonl`` and ``drill-timeline.jsonl`` (marks). Pure of Locust and gevent: the
caller runs :meth:`LiveHistory.sample` on its own schedule.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from xrh import runs

MAX_POINTS = 3600  # an hour at one sample a second
LAG_WINDOW_S = 10  # p50/p99 over the shards' lag samples of the last 10 s
RATE_WINDOW_S = 3  # rates over the last 3 s (the replicator writes its metrics about once a second)
#: metrics counters that say "replicated", by pipeline (the first one present wins)
REPLICATED = ("records_copied", "changes_applied", "actions_applied", "applied")
TIMELINE_FILE = "drill-timeline.jsonl"


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(len(ordered) * q / 100) - 1)]


class _Tail:
    """The lines appended to a JSON-lines file since the last read."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset = path, 0

    def read(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                chunk = handle.read()
        except OSError:
            return []
        end = chunk.rfind(b"\n") + 1  # a line still being written waits for the next read
        self.offset += end
        out = []
        for raw in chunk[:end].splitlines():
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            if isinstance(line, dict):
                out.append(line)
        return out


def read_metrics(path: Path) -> dict[str, Any]:
    """The replicator's metrics file: replicated count, shard lags, watermark (empty if none)."""
    try:
        metrics = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(metrics, dict):
        return {}
    workers = metrics.get("workers") if isinstance(metrics.get("workers"), dict) else {}
    snaps = [w for w in workers.values() if isinstance(w, dict)] or [metrics]
    if any(str(k).startswith("lazy") for k in workers):  # action log: region B's consumer
        snaps = [w for k, w in workers.items() if str(k).startswith("lazy") and isinstance(w, dict)]
    replicated = None
    for name in REPLICATED:
        values = [(s.get("counters") or {}).get(name) for s in snaps]
        values = [v for v in values if isinstance(v, int)]
        if values:
            replicated = sum(values)
            break
    lags: dict[str, float] = {}
    for snap in snaps:
        for shard, lag in (snap.get("shards") or {}).items():
            if isinstance(lag, dict):
                value = lag.get("commit_lag_ms", lag.get("millis_behind_latest"))
                if isinstance(value, int | float):
                    lags[str(shard)] = max(value, lags.get(str(shard), value))
    marks = [s.get("watermark_ms") for s in snaps if isinstance(s.get("watermark_ms"), int)]
    return {"replicated": replicated, "lags": lags, "watermark_ms": max(marks) if marks else None}


class LiveHistory:
    """The run's history for the tab. ``current()`` gives (run directory, acknowledged count,
    running) of the run in progress, else of the last one, else None. Samples are taken while
    the run goes; its history stays after it ended, until the next run starts."""

    def __init__(self, current: Callable[[], tuple[runs.RunDir, int, bool] | None],
                 clock: Callable[[], float] = time.time) -> None:  # fmt: skip
        self.current, self.clock = current, clock
        self.run_id: str | None = None
        self._reset(None)

    def _reset(self, run: runs.RunDir | None) -> None:
        self.run_id = run.run_id if run else None
        self.t_ms: list[int] = []
        self.produced: list[float | None] = []
        self.replicated: list[float | None] = []
        self.lag_p50: list[float | None] = []
        self.lag_p99: list[float | None] = []
        self.watermark_ms: list[int | None] = []
        self.shard_lags: dict[str, list[tuple[int, float]]] = {}
        self.faults: list[dict[str, Any]] = []
        self.drill: list[dict[str, Any]] = []
        self._raw: list[tuple[int, int, int | None]] = []  # t_ms, acknowledged, replicated
        self._tails = ((_Tail(run.file(runs.FAULTS_FILE)), self.faults),
                       (_Tail(run.file(TIMELINE_FILE)), self.drill)) if run else ()  # fmt: skip

    def sample(self) -> None:
        """One sample of the run (a new run starts a new history)."""
        found = self.current()
        if found is None:
            return
        run, acknowledged, running = found
        if run.run_id != self.run_id:
            self._reset(run)
        elif not running:
            for tail, into in self._tails:  # the last faults and drill steps of the run
                into.extend(tail.read())
            return
        now = int(self.clock() * 1000)
        metrics = read_metrics(run.file(runs.METRICS_FILE))
        replicated = metrics.get("replicated")
        for tail, into in self._tails:
            into.extend(tail.read())
        for shard, lag in (metrics.get("lags") or {}).items():
            self.shard_lags.setdefault(shard, []).append((now, float(lag)))
        earlier = [r for r in self._raw if r[0] <= now - RATE_WINDOW_S * 1000]
        base = earlier[-1] if earlier else (self._raw[0] if self._raw else None)
        self._raw = [r for r in self._raw if r[0] > now - 2 * RATE_WINDOW_S * 1000] + [
            (now, acknowledged, replicated)]  # fmt: skip
        if base is not None:
            t_prev, ack_prev, rep_prev = base
            seconds = max((now - t_prev) / 1000, 1e-3)
            self.t_ms.append(now)
            self.produced.append(max(0, acknowledged - ack_prev) / seconds)
            self.replicated.append(max(0, replicated - (rep_prev or 0)) / seconds
                                   if replicated is not None else None)  # fmt: skip
            recent = [v for points in self.shard_lags.values() for t, v in points
                      if t > now - LAG_WINDOW_S * 1000]  # fmt: skip
            self.lag_p50.append(percentile(recent, 50))
            self.lag_p99.append(percentile(recent, 99))
            self.watermark_ms.append(metrics.get("watermark_ms"))
            self._trim()

    def _trim(self) -> None:
        extra = len(self.t_ms) - MAX_POINTS
        if extra > 0:
            for series in (self.t_ms, self.produced, self.replicated, self.lag_p50,
                           self.lag_p99, self.watermark_ms):  # fmt: skip
                del series[:extra]
        for points in self.shard_lags.values():
            del points[: max(0, len(points) - MAX_POINTS)]

    def per_shard(self) -> list[dict[str, Any]]:
        """Each shard's lag over the run: p50, p99, max of its samples."""
        out = []
        for shard, points in sorted(self.shard_lags.items()):
            values = [v for _, v in points]
            out.append({"shard": shard, "samples": len(values), "p50": percentile(values, 50),
                        "p99": percentile(values, 99), "max": max(values)})  # fmt: skip
        return out

    def snapshot(self) -> dict[str, Any]:
        return {
            "run": self.run_id,
            "t_ms": list(self.t_ms),
            "produced_per_s": list(self.produced),
            "replicated_per_s": list(self.replicated),
            "lag_p50_ms": list(self.lag_p50),
            "lag_p99_ms": list(self.lag_p99),
            "watermark_ms": list(self.watermark_ms),
            "per_shard": self.per_shard(),
            "faults": len(self.faults),
            "drill": [s for s in self.drill if s.get("action") not in ("drill", "drill-end")],
        }
