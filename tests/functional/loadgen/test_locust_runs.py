"""The main job end to end: ``locust -f locustfile.py --headless`` as a subprocess.

Each run gets its own session (process group); after it exits the test checks that nothing of
that group is left running (endpoint servers, the replicator), and kills it if something is.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
LOCUST = [sys.executable, "-m", "locust", "-f", str(ROOT / "locustfile.py")]

pytestmark = pytest.mark.functional


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _reap(procs: list[subprocess.Popen], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(max(0.1, deadline - time.monotonic()))
    leftovers = []
    for proc in procs:
        pgid = proc.pid
        for _ in range(50):  # children get a moment to exit after their parent
            if not _group_alive(pgid):
                break
            time.sleep(0.1)
        if _group_alive(pgid):
            leftovers.append(pgid)
            os.killpg(pgid, signal.SIGKILL)
    assert not leftovers, f"processes left running in groups {leftovers}"


def run_locust(cwd: Path, *args: str, timeout: float = 120) -> tuple[int, str, str]:
    proc = subprocess.Popen(
        [*LOCUST, *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"locust did not finish within {timeout}s:\n{err[-3000:]}")
    finally:
        _reap([proc], 10)
    return proc.returncode, out, err


def report(cwd: Path) -> dict:
    return json.loads((cwd / "runs" / "latest" / "report.json").read_text())


def stats_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def assert_locust_csvs(base: Path, acknowledged: int, *, full_history: bool = True) -> None:
    """Locust's CSV stats: the PutRecords row counts the requests that carried the records."""
    for suffix in ("_stats.csv", "_stats_history.csv", "_failures.csv", "_exceptions.csv"):
        assert Path(f"{base}{suffix}").is_file(), f"{base}{suffix} missing"
    rows = stats_rows(Path(f"{base}_stats.csv"))
    put = [r for r in rows if r["Type"] == "kinesis" and r["Name"] == "PutRecords"]
    assert len(put) == 1, rows
    requests, failures = int(put[0]["Request Count"]), int(put[0]["Failure Count"])
    # At most 500 records per request, and (linger) at least one: the count is the real one.
    assert acknowledged / 500 <= requests - failures <= acknowledged
    assert failures <= requests // 10  # none is the stop's: see assert_stop_cut_nothing
    assert any(r["Name"] == "Aggregated" for r in rows)
    history = stats_rows(Path(f"{base}_stats_history.csv"))
    name = "PutRecords" if full_history else "Aggregated"  # --csv alone: totals only
    assert any(r["Name"] == name and int(r["Total Request Count"]) > 0 for r in history)
    failed = stats_rows(Path(f"{base}_failures.csv"))
    assert sum(int(r["Occurrences"]) for r in failed) == failures


def assert_stop_cut_nothing(run_dir: Path, *outputs: str) -> None:
    """The run's stop let every producer finish its PutRecords in flight and send its final
    batch: no ledger row says the run stopped it (``unknown`` "interrupted: the run stopped
    during the request", ``fail`` "not sent: the run stopped ..."), and no request cut off
    (GreenletExit, RequestCutOff) reached Locust's failures, exceptions or output."""
    db = sqlite3.connect(f"file:{run_dir / 'ledger.sqlite'}?mode=ro", uri=True)
    try:
        stopped = db.execute(
            "SELECT status, error, COUNT(*) FROM ledger WHERE error LIKE '%the run stopped%'"
            " GROUP BY status, error"
        ).fetchall()
    finally:
        db.close()
    assert stopped == [], stopped
    for suffix in ("_failures.csv", "_exceptions.csv"):
        text = (run_dir / f"locust{suffix}").read_text()
        assert "GreenletExit" not in text and "RequestCutOff" not in text, text
    for text in outputs:
        assert "GreenletExit" not in text and "RequestCutOff" not in text, text[-3000:]


def test_headless_run_ends_valid(tmp_path: Path):
    code, out, err = run_locust(
        tmp_path, "--headless", "-u", "10", "-r", "10", "-t", "10s", "--only-summary", "--seed", "7"
    )
    assert code == 0, err[-3000:]
    rep = report(tmp_path)
    assert rep["verdict"] == "valid"
    assert rep["counts"]["acknowledged"] >= 2000
    assert rep["anomalies"]["lost"]["count"] == 0
    assert (tmp_path / "runs" / "latest" / "ledger.sqlite").exists()
    assert "verdict: valid" in out
    assert not (tmp_path / "runs" / "latest" / "endpoints.json").exists()
    assert_locust_csvs(tmp_path / "runs" / "latest" / "locust", rep["counts"]["acknowledged"])
    assert_stop_cut_nothing(tmp_path / "runs" / "latest", out, err)

    # Verify again after the run: its endpoint is gone, so the stored read is re-checked and
    # the report comes out the same.
    again = subprocess.run(
        [sys.executable, "-m", "xrh", "verify", "--run-dir", "runs/latest", "--no-progress"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr[-2000:]
    assert "re-checking the read stored in verify.sqlite" in again.stderr
    rerun = report(tmp_path)
    for field in ("verdict", "counts", "anomalies", "watermark", "lag_ms"):
        assert rerun[field] == rep[field], field


def test_external_replicator_with_nothing_replicating_ends_invalid(tmp_path: Path):
    code, out, err = run_locust(
        tmp_path, "--headless", "-u", "4", "-r", "4", "-t", "8s", "--only-summary",
        "--replicator", "external", "--verify-timeout", "30", "--csv", "mine/user",
        "--settle-seconds", "3",
    )  # fmt: skip
    assert code == 1, err[-3000:]
    rep = report(tmp_path)
    assert rep["verdict"] == "invalid"
    assert rep["details"]["settle"]["stopped_by"] == "no progress for 3 s"
    lost = rep["anomalies"]["lost"]
    assert lost["count"] == rep["counts"]["acknowledged"] > 0
    assert lost["examples"] and "trace" in json.dumps(lost["examples"][0])
    # The run directory keeps its CSVs, and --csv still writes the user's own set too.
    assert_locust_csvs(tmp_path / "runs" / "latest" / "locust", rep["counts"]["acknowledged"])
    assert_locust_csvs(
        tmp_path / "mine" / "user", rep["counts"]["acknowledged"], full_history=False
    )
    assert_stop_cut_nothing(tmp_path / "runs" / "latest", out, err)


def test_template_error_stops_before_any_load(tmp_path: Path):
    code, out, err = run_locust(
        tmp_path, "--headless", "-u", "2", "-r", "2", "-t", "5s",
        "--template", '{"a": {{random.number(5)}},\n "b": "{{name.frstName}}"}', timeout=60,
    )  # fmt: skip
    assert code == 3
    assert "template line 2, column 8: unknown helper name.frstName" in err
    assert "did you mean name.firstName" in err
    assert not (tmp_path / "runs").exists()  # nothing was started
    assert "Traceback" not in err


def test_distributed_run_master_and_two_workers_ends_valid(tmp_path: Path):
    port = 5557 + os.getpid() % 200
    master = subprocess.Popen(
        [*LOCUST, "--headless", "-u", "10", "-r", "10", "-t", "10s", "--only-summary",
         "--master", "--expect-workers", "2", "--master-bind-host", "127.0.0.1",
         "--master-bind-port", str(port)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    workers = [
        subprocess.Popen(
            [*LOCUST, "--worker", "--master-host", "127.0.0.1", "--master-port", str(port)],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        for _ in range(2)
    ]
    try:
        out, err = master.communicate(timeout=150)
    except subprocess.TimeoutExpired:
        os.killpg(master.pid, signal.SIGKILL)
        out, err = master.communicate()
        pytest.fail(f"the master did not finish:\n{err[-3000:]}")
    finally:
        _reap([master, *workers], 20)
    assert master.returncode == 0, err[-3000:]
    rep = report(tmp_path)
    assert rep["verdict"] == "valid"
    assert rep["counts"]["acknowledged"] >= 2000
    assert "2 worker(s) set up" in err
    assert "missing final batches" not in err
    # The master writes the CSVs with the workers' stats in them.
    assert_locust_csvs(tmp_path / "runs" / "latest" / "locust", rep["counts"]["acknowledged"])
    assert_stop_cut_nothing(tmp_path / "runs" / "latest", out, err)
    for worker in workers:
        assert worker.returncode == 0


def test_ctrl_c_lets_requests_in_flight_finish_and_ends_the_run(tmp_path: Path):
    """SIGINT (Ctrl-C) mid-run stops the users the same graceful way as --run-time."""
    out_path, err_path = tmp_path / "out.txt", tmp_path / "err.txt"
    with out_path.open("w") as out_file, err_path.open("w") as err_file:
        proc = subprocess.Popen(
            [*LOCUST, "--headless", "-u", "10", "-r", "10", "-t", "90s", "--only-summary",
             "--replicator", "external", "--no-verify"],
            cwd=tmp_path, stdout=out_file, stderr=err_file, text=True, start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while "[xrh] producing..." not in err_path.read_text():
                assert proc.poll() is None, err_path.read_text()[-3000:]
                assert time.monotonic() < deadline, "the run never started producing"
                time.sleep(0.2)
            time.sleep(3)
            proc.send_signal(signal.SIGINT)
            proc.wait(60)
        finally:
            _reap([proc], 10)
    out, err = out_path.read_text(), err_path.read_text()
    assert proc.returncode == 0, err[-3000:]
    assert "--no-verify: skipping verify" in err  # the run was finished, not abandoned
    assert "Exiting due to CTRL+C interruption" in err  # Locust's main greenlet handled it...
    assert "KeyboardInterrupt" not in err  # ...and no other greenlet was interrupted by it
    db = sqlite3.connect(tmp_path / "runs" / "latest" / "ledger.sqlite")
    try:
        ok = db.execute("SELECT COUNT(*) FROM ledger WHERE status = 'ok'").fetchone()[0]
        complete = db.execute("SELECT value FROM ledger_meta WHERE name = 'complete'").fetchone()
    finally:
        db.close()
    assert ok > 0
    assert complete == ("1",)  # every producer's final batch is in
    assert_stop_cut_nothing(tmp_path / "runs" / "latest", out, err)


def test_run_that_ends_during_set_up_is_unknown_never_a_silent_success(tmp_path: Path):
    """Locust's --run-time clock runs while the embedded endpoint, provisioning and the
    replicator start; a run that ends before any load must not exit 0 without a verdict."""
    code, out, err = run_locust(tmp_path, "--headless", "-u", "2", "-r", "2", "-t", "1s")
    assert code == 2, err[-2000:]
    assert "ended while it was still being set up" in err or "ended without a verdict" in err
