"""The pages people look at, in a real headless browser (Debian's chromium): Locust's
"Replication" tab during a short real run with the web UI, its charts page, and the run's
report.html afterwards. Each must hold data points, not empty axes.

Skips, saying why, when chromium is not installed or cannot start here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from test_locust_runs import LOCUST, _reap, stats_rows

pytestmark = pytest.mark.functional

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]  # fmt: skip


def _chromium(tmp_path: Path) -> list[str]:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium)")
    cmd = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium'}"]
    try:
        probe = subprocess.run([*cmd, "--dump-dom", "data:text/html,<p>ok</p>"],
                               capture_output=True, text=True, timeout=60)  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.skip("chromium did not answer within 60 s")
    if "<p>ok</p>" not in probe.stdout:
        pytest.skip(f"chromium cannot start here: {probe.stderr.strip()[-300:]}")
    return cmd


def dump_dom(cmd: list[str], url: str, budget_ms: int = 5000) -> str:
    """The page's DOM after its scripts ran for ``budget_ms`` of virtual time."""
    done = subprocess.run([*cmd, f"--virtual-time-budget={budget_ms}", "--dump-dom", url],
                          capture_output=True, text=True, timeout=90)  # fmt: skip
    return done.stdout


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return json.loads(answer.read())


def chart_points(html: str, chart_id: str) -> dict[str, int]:
    """Points of each series drawn in the chart ``chart_id`` (its SVG polylines)."""
    figure = re.search(rf'<figure id="{chart_id}">(.*?)</figure>', html, re.S)
    assert figure is not None, f"no chart {chart_id}"
    out: dict[str, int] = {}
    for points, series in re.findall(r'points="([^"]*)" data-series="([^"]*)"', figure.group(1)):
        out[series] = out.get(series, 0) + len(points.split())
    return out


def test_replication_tab_live_and_report_after_hold_data_points(tmp_path: Path):
    cmd = _chromium(tmp_path)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [*LOCUST, "-u", "5", "-r", "5", "-t", "14s", "--autostart", "--autoquit", "1",
         "--web-host", "127.0.0.1", "--web-port", str(port), "--only-summary", "--seed", "3"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        # During the run: wait (bounded) until the tab's history has a few samples.
        live: dict = {}
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            try:
                live = _get_json(f"{base}/xrh/live.json")
            except OSError:
                live = {}
            if live.get("status", {}).get("running") and len(live.get("t_ms", [])) >= 4:
                break
            time.sleep(0.5)
        assert live.get("status", {}).get("running"), f"the run never showed as running: {live}"

        locust_page = dump_dom(cmd, f"{base}/?tab=xrh")
        assert ">Replication<" in locust_page  # Locust's own tab bar has the tab
        assert "published watermark" in locust_page  # its table, from /stats/requests
        assert 'id="xrh-frame"' in locust_page  # and the charts page under the table

        page = dump_dom(cmd, f"{base}/xrh/?embed=1")
        rates = chart_points(page, "live-rates")
        assert rates.get("produced/s", 0) >= 3 and rates.get("replicated/s", 0) >= 2, rates
        assert chart_points(page, "live-lag").get("p99 ms", 0) >= 2
        assert chart_points(page, "live-watermark")
        assert "records per request" in page

        out, err = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"locust did not finish within its time:\n{err[-3000:]}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        _reap([proc], 15)
    assert proc.returncode == 0, err[-3000:]

    # After the run: the report, offline, in the browser.
    report = (tmp_path / "runs" / "latest" / "report.html").resolve()
    html = dump_dom(cmd, report.as_uri(), budget_ms=1000)
    for chart in ("chart-rates", "chart-lag-over-time"):
        points = chart_points(html, chart)
        assert points and min(points.values()) >= 5, (chart, points)
    assert re.search(r'class="x-clock"[^>]*>\d\d:\d\d:\d\d<', html)  # wall-clock ticks
    assert "Verdict: valid" in html

    # Locust's request stats tell bytes: the PutRecords "Average Content Size" times the
    # requests is the bytes of the records sent (about 110 a record here), not their count.
    rows = stats_rows(tmp_path / "runs" / "latest" / "locust_stats.csv")
    (put,) = [r for r in rows if r["Name"] == "PutRecords"]
    sent = float(put["Average Content Size"]) * int(put["Request Count"])
    acknowledged = json.loads(report.with_suffix(".json").read_text())["counts"]["acknowledged"]
    assert 60 <= sent / acknowledged <= 400, (sent, acknowledged)
