"""``xrh drill NAME`` and ``xrh drill --all``: each drill is a headless Locust run of the main
job with ``--drill NAME`` (load, the drill's schedule, drain, verify), so a drill proves exactly
what the main job proves, under its faults.

``--all`` runs every drill of the pipeline for each ``--replicator`` and writes ``drills.json``
(one row per drill and replicator: verdict, anomaly counts, recovery time, run directory) and
``drills.html`` (the matrix, offline) in ``runs/drills-<time>/``. It exits 0 when every
reference-replicator row has the verdict its drill expects (``valid``); rows of other
replicators are shown, not judged (the sample is expected to fail some).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

from xrh.config import config_from_options
from xrh.drills import Drill, catalogue, get_drill
from xrh.errors import EXIT_INVALID, EXIT_USAGE, UsageError

REPLICATORS = ("reference", "sample", "external")
COLUMNS = ("lost", "duplicated", "reordered", "stale", "checkpoint_ahead", "looped")
# The table pipelines' anomalies (DESIGN.md, "report.json"), shown instead of the stream ones.
TABLE_COLUMNS = ("lost", "phantom", "stale", "diverged")
# The action log's: an ADD counted twice is its own anomaly; active-active's: a deleted key
# back, a change forwarded round a loop.
PIPELINE_COLUMNS = {
    "kinesis": COLUMNS,
    "action-log": (*TABLE_COLUMNS, "double_applied"),
    "active-active": ("diverged", "stale", "lost", "phantom", "resurrected", "ping_pong"),
    "postgres-cdc": ("lost", "phantom", "reordered", "incomplete_transaction", "diverged",
                     "checkpoint_ahead"),
}


def columns(pipeline: str) -> tuple[str, ...]:
    return PIPELINE_COLUMNS.get(pipeline, TABLE_COLUMNS)


RUN_DIR_MARK = "[xrh] run directory: "


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", help="the drill to run (see --list)")
    parser.add_argument("--all", action="store_true", help="every drill: drills.json and .html")
    parser.add_argument("--list", action="store_true", help="list the drills and exit")
    parser.add_argument("--replicator", default="reference",
                        help="reference, sample or external; with --all a comma list "
                        "(default reference)")  # fmt: skip
    parser.add_argument("-t", "--run-time", default="20s", help="load per drill (default 20s)")
    parser.add_argument("-u", "--users", type=int, default=10, help="Locust users (default 10)")
    parser.add_argument("--rate-per-user", type=float, default=100.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--settle-seconds", type=float, default=30.0)
    parser.add_argument("--bootstrap-items", type=int, default=None,
                        help="dynamodb: items loaded into A before the replicator starts "
                        "(default: the drill's own, 20000)")  # fmt: skip
    parser.add_argument("--keys", type=int, default=None,
                        help="keyspace size of the load (default: the run's, 10000)")
    parser.add_argument("--capture", choices=("slot", "notify"), default=None,
                        help="postgres-cdc: capture through the replication slot (default) or "
                        "the seed's trigger + LISTEN/NOTIFY")  # fmt: skip
    parser.add_argument("--table-mappings", default=None,
                        help="postgres-cdc: AWS DMS table-mapping rules for capture (@file or "
                        "inline JSON), passed to each drill's run")  # fmt: skip


def locustfile() -> Path:
    """The project's locustfile (an installed package writes an equivalent one once)."""
    import loadgen

    beside = Path(loadgen.__file__).resolve().parents[1] / "locustfile.py"
    if beside.exists():
        return beside
    path = Path.home() / ".cache" / "xrh" / "locustfile.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "import locust  # noqa: I001\n"
        "from loadgen.locust_users import KinesisProducerUser, XrhShape, register\n"
        "register(locust.events)\n"
        '__all__ = ["KinesisProducerUser", "XrhShape"]\n'
    )
    return path


def _common_flags(args: argparse.Namespace) -> list[str]:
    flags = []
    for dest, flag in (("pipeline", "--pipeline"), ("region_a", "--region-a"),
                       ("region_b", "--region-b"),
                       ("prefix", "--prefix"), ("shards", "--shards"),
                       ("runs_dir", "--runs-dir")):  # fmt: skip
        value = getattr(args, dest, None)
        if value not in (None, ""):
            flags += [flag, str(value)]
    return flags


def command(args: argparse.Namespace, drill: Drill, replicator: str) -> list[str]:
    cmd = [
        sys.executable, "-m", "locust", "-f", str(locustfile()), "--headless",
        "-u", str(args.users), "-r", str(args.users), "-t", str(args.run_time),
        "--drill", drill.name, "--replicator", replicator,
        "--rate-per-user", str(args.rate_per_user), "--settle-seconds", str(args.settle_seconds),
        *_common_flags(args),
    ]  # fmt: skip
    # The drill's own load options (Drill.load_args) are taken by --drill for whatever is not
    # given here; a value given here wins.
    if getattr(args, "bootstrap_items", None) is not None:
        cmd += ["--bootstrap-items", str(args.bootstrap_items)]
    if getattr(args, "keys", None) is not None:
        cmd += ["--keys", str(args.keys)]
    if getattr(args, "capture", None) is not None:
        cmd += ["--capture", args.capture]
    if getattr(args, "table_mappings", None) is not None:
        cmd += ["--table-mappings", args.table_mappings]
    if args.seed is not None:
        cmd += ["--seed", str(args.seed)]
    return cmd


def run_one(args: argparse.Namespace, drill: Drill, replicator: str,
            log: Path | None = None) -> dict[str, Any]:  # fmt: skip
    """One drill as a Locust run; its row of the matrix (printed output goes to ``log``)."""
    started = time.monotonic()
    run_dir = None
    with subprocess.Popen(  # noqa: S603 - our own interpreter
        command(args, drill, replicator), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    ) as process:  # fmt: skip
        sink = log.open("w") if log else sys.stderr
        try:
            assert process.stderr is not None
            for line in process.stderr:
                sink.write(line)
                if line.startswith(RUN_DIR_MARK):
                    run_dir = Path(line[len(RUN_DIR_MARK) :].strip())
        finally:
            if log:
                sink.close()
        code = process.wait()
    return row(drill, replicator, code, run_dir, time.monotonic() - started)


def row(drill: Drill, replicator: str, code: int, run_dir: Path | None,
        seconds: float) -> dict[str, Any]:  # fmt: skip
    out: dict[str, Any] = {
        "drill": drill.name, "replicator": replicator, "exit_code": code,
        "verdict": "unknown", "expected": drill.expect if replicator == "reference" else None,
        "run_dir": str(run_dir.resolve()) if run_dir else None, "seconds": round(seconds, 1),
    }  # fmt: skip
    report_path = run_dir / "report.json" if run_dir else None
    if report_path is None or not report_path.exists():
        out["reasons"] = ["the run wrote no report (see its log)"]
        return out
    report = json.loads(report_path.read_text())
    out["verdict"] = report["verdict"]
    out["reasons"] = report["reasons"]
    for kind in columns(drill.pipeline):
        out[kind] = report["anomalies"].get(kind, {}).get("count", 0)
    out["dead_lettered"] = (report["details"].get("dead_letters") or {}).get("count", 0)
    out["recovery_s"] = (report["details"].get("drill") or {}).get("recovery_s")
    # Counterexamples of violations only: duplicates are allowed (at-least-once).
    examples = [
        f"{kind}: {a['examples'][0].get('explanation') or a['examples'][0]}"
        for kind, a in report["anomalies"].items()
        if a["count"] and a["examples"] and kind != "duplicated"
    ]  # fmt: skip
    out["counterexamples"] = examples[:3]
    return out


def render_matrix(rows: list[dict[str, Any]], pipeline: str = "kinesis") -> str:
    kinds = columns(pipeline)
    head = "".join(f"<th>{escape(c)}</th>" for c in (
        "drill", "replicator", "verdict", *kinds, "dead-lettered", "recovery s",
        "counterexample"))  # fmt: skip
    body = ""
    for r in rows:
        ok = r["expected"] is None or r["verdict"] == r["expected"]
        recovery = r.get("recovery_s")
        cells = [r["drill"], r["replicator"], r["verdict"], *(r.get(c, "") for c in kinds),
                 r.get("dead_lettered", ""), "" if recovery is None else recovery]  # fmt: skip
        example = "<br>".join(escape(str(e)[:300]) for e in r.get("counterexamples", []))
        body += (
            f'<tr class="{r["verdict"]}{"" if ok else " unexpected"}">'
            + "".join(f"<td>{escape(str(c))}</td>" for c in cells)
            + f"<td><small>{example}</small></td></tr>"
        )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>xrh drills</title>
<style>body {{ font-family: sans-serif; margin: 2em; }} table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; vertical-align: top; }}
tr.valid td:nth-child(3) {{ color: #2a7a2a; }} tr.invalid td:nth-child(3) {{ color: #b00; }}
tr.unknown td:nth-child(3) {{ color: #a60; }} tr.unexpected {{ background: #fee; }}</style>
</head><body><h1>Drills</h1>
<p>Each row is one drill (load, its fault schedule, drain, verify) with one replicator. The
reference replicator must end every drill valid (a row in red did not); other replicators are
shown for what the harness catches in them. Recovery: seconds from the drill's last fault step
until the target held every record that had reached the source by then.</p>
<table id="drills"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>
</body></html>
"""


def run(args: argparse.Namespace) -> int:
    config = config_from_options(args)
    drills = catalogue(config.pipeline)
    if args.list:
        for drill in drills:
            print(f"{drill.name:24} {drill.summary}")
        return 0
    replicators = [r.strip() for r in str(args.replicator).split(",") if r.strip()]
    for replicator in replicators:
        if replicator not in REPLICATORS:
            raise UsageError(f"--replicator {replicator!r}: choose from {', '.join(REPLICATORS)}")
    if args.users < 1:
        raise UsageError(f"-u {args.users}: at least one user")
    if args.all == bool(args.name):
        raise UsageError("give one drill NAME or --all (xrh drill --list shows them)")
    if not drills:
        raise UsageError(f"--pipeline {config.pipeline}: no drills yet")
    if not args.all:
        if len(replicators) != 1:
            raise UsageError("one drill runs with one --replicator")
        drill = get_drill(args.name, config.pipeline, option="xrh drill")
        result = run_one(args, drill, replicators[0])
        return int(result["exit_code"])
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir = config.runs_dir / f"drills-{stamp}"
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for drill in drills:
        for replicator in replicators:
            print(f"drill {drill.name} with the {replicator} replicator...", flush=True)
            result = run_one(args, drill, replicator, out_dir / f"{drill.name}-{replicator}.log")
            rows.append(result)
            print(f"  {result['verdict']}: " + ", ".join(
                f"{k} {result.get(k, 0)}" for k in columns(config.pipeline)) + (
                f"; recovered in {result['recovery_s']} s" if result.get("recovery_s") is not None
                else ""), flush=True)  # fmt: skip
            # after every row, so an interrupted matrix keeps what it measured
            (out_dir / "drills.json").write_text(json.dumps(rows, indent=2) + "\n")
            (out_dir / "drills.html").write_text(render_matrix(rows, config.pipeline))
    print(f"matrix: {out_dir / 'drills.json'}  {out_dir / 'drills.html'}")
    failed = [r for r in rows if r["expected"] is not None and r["verdict"] != r["expected"]]
    for r in failed:
        print(f"  {r['drill']} ({r['replicator']}): {r['verdict']}, expected {r['expected']}: "
              f"{'; '.join(r.get('reasons', []))}")  # fmt: skip
    return EXIT_INVALID if failed else 0


__all__ = ["EXIT_USAGE", "add_arguments", "run"]
