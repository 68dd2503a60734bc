"""The replication tab of Locust's web UI, and its page ``/xrh/``.

Locust's documented extension points (Locust 2.x, its React web UI): ``extended_tabs`` and
``extended_tables`` in ``environment.web_ui.template_args`` add the "Replication" tab, and the
rows of its table come with every ``/stats/requests`` poll as ``extended_stats`` (an
``after_request`` hook on Locust's Flask app). Such a tab can only hold a table, so the same
hook adds one small script to Locust's page (``/xrh/tab.js``) that shows the ``/xrh/`` page,
with its charts, under the table while the tab is open. ``/xrh/`` works alone too.

Routes (JSON from Locust's own web app, on its host and port):

- ``/xrh/`` the page: the figures, the charts (records produced vs replicated per second,
  replication lag p50/p99 and per shard, the published watermark against wall time, injected
  faults and drill steps as marks), after the run the verdict, anomaly counts and a link to
  the report; ``/xrh`` redirects there (the page's relative URLs need the slash);
- ``/xrh/status.json`` the run, ledger counts, lag, verdict; ``/xrh/live.json`` the sampled
  history (:mod:`loadgen.webui_live`) and the charts drawn by :mod:`verify.charts`;
- ``/xrh/report.html`` the run's report once verify wrote it.

The master of a distributed run shows it all (it has the run directory, the ledger and the
replicator); workers have no web UI.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from loadgen.orchestrator import read_lag
from loadgen.webui_live import LiveHistory
from verify.charts import bar_chart, clock, drill_marks, fault_marks, line_chart
from xrh import runs

if TYPE_CHECKING:
    from loadgen.orchestrator import Orchestrator

TAB = "xrh"
SAMPLE_S = 1.0

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>xrh replication</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.3em} table{border-collapse:collapse} td,th{padding:.25em .8em;border-bottom:1px solid #ddd;text-align:left}
.valid{color:#080;font-weight:bold}.invalid{color:#b00;font-weight:bold}.unknown{color:#b60;font-weight:bold}
figure{margin:1em 0} figcaption{font-weight:bold}
</style></head><body>
<h1>Cross-region replication</h1>
<p id="nav"><a href="../" target="_top">&larr; Locust</a></p>
<table id="t"><tr><td>waiting for the run...</td></tr></table>
<div id="charts"></div>
<script>
async function tick(){
  let s; try{ s=await (await fetch('live.json',{cache:'no-store'})).json(); }catch(e){ return; }
  document.getElementById('t').innerHTML=s.rows.map(r=>`<tr><th>${r.figure}</th><td>${r.html}</td></tr>`).join('');
  document.getElementById('charts').innerHTML=s.charts_html;
}
if(location.search.includes('embed=1')){document.getElementById('nav').style.display='none';}
setInterval(tick,2000); tick();
</script></body></html>
"""

# Shows /xrh/ under Locust's own "Replication" tab table (the tab is Locust's; see above).
TAB_JS = """(function(){
  function update(){
    const open=new URLSearchParams(location.search).get('tab')==='%(tab)s';
    let frame=document.getElementById('xrh-frame');
    const table=document.querySelector('#root table');
    const box=table&&(table.closest('.MuiTableContainer-root')||table.parentElement);
    if(open&&box&&(!frame||frame.previousElementSibling!==box)){
      if(!frame){
        frame=document.createElement('iframe'); frame.id='xrh-frame'; frame.src='./xrh/?embed=1';
        frame.title='replication charts';
        frame.style.cssText='width:100%%;height:2000px;border:0;display:block;margin-top:1em';
      }
      box.after(frame);  // under the tab's table, inside Locust's own tab panel
    }
    if(frame){frame.style.display=open?'block':'none';}
  }
  setInterval(update,500); update();
})();
"""


def run_status(orch: Orchestrator | None, error: str | None) -> dict[str, Any]:
    """What ``/xrh/status.json`` answers: the run in progress (else the last one), its ledger
    counts and lag, and once verify has run its verdict, reasons and anomaly counts."""
    state = orch.state or orch.last if orch else None
    out: dict[str, Any] = {"running": bool(orch and orch.state), "error": error}
    if state is not None:
        out.update(run=state.run.run_id, stream=orch.stream if orch else None,
                   lag=read_lag(state.run), ledger=state.ledger.counts, verdict=state.verdict,
                   exit_code=state.exit_code,
                   report_html=state.run.file(runs.REPORT_HTML).is_file())  # fmt: skip
        if state.report:
            out["report"] = {
                k: state.report.get(k) for k in ("verdict", "reasons", "counts", "lag_ms")
            }
            out["anomalies"] = {
                k: v.get("count") for k, v in (state.report.get("anomalies") or {}).items()
            }
    return out


def current_run(orch: Orchestrator | None) -> tuple[runs.RunDir, int, bool] | None:
    """The run in progress, else the last one: its directory, acknowledged writes so far,
    and whether it is still running."""
    state = (orch.state or orch.last) if orch else None
    if state is None:
        return None
    return state.run, int(state.ledger.counts.get("ok", 0)), orch.state is not None


def charts_html(live: dict[str, Any]) -> str:
    """The tab's charts, on one time axis: seconds since the first sample, wall clock below."""
    ts = live["t_ms"]
    if not ts:
        return "<p>The charts start with the run's first samples (one a second).</p>"
    t0 = ts[0]
    xs = [(t - t0) / 1000 for t in ts]
    marks = fault_marks(live.get("fault_events") or [], t0) + drill_marks(live["drill"], t0)
    since = f"seconds since {clock(t0)} UTC (wall clock)"
    behind = [(t - w) / 1000 if w else None for t, w in zip(ts, live["watermark_ms"], strict=True)]
    shards = live["per_shard"]
    return (
        line_chart("live-rates", "Records produced (acknowledged) vs replicated per second", xs,
                   {"produced/s": live["produced_per_s"],
                    "replicated/s": live["replicated_per_s"]},
                   since, "records per second", marks=marks, t0_ms=t0)
        + line_chart("live-lag", f"Replication lag over the shards' last {10} s (ms)", xs,
                     {"p50 ms": live["lag_p50_ms"], "p99 ms": live["lag_p99_ms"]}, since,
                     "replication lag (ms)", marks=marks, t0_ms=t0)
        + line_chart("live-watermark",
                     "Published watermark against wall time: how far behind the wall clock "
                     "region B is proven complete (the commit delay bound included)", xs,
                     {"wall time minus watermark (s)": behind}, since,
                     "watermark behind wall time (s)", marks=marks, t0_ms=t0)
        + (bar_chart("live-lag-per-shard", "Replication lag per shard over the run",
                     [s["shard"] for s in shards],
                     {k: [s[k] for s in shards] for k in ("p50", "p99", "max")},
                     "replication lag (ms)") if shards else "")
    )  # fmt: skip


def summary_rows(status: dict[str, Any], live: dict[str, Any],
                 requests: list[dict[str, Any]]) -> list[dict[str, str]]:  # fmt: skip
    """The tab's table: figure and value (text), and the value as HTML for the page."""
    from html import escape

    def last(series: list[Any]) -> str:
        values = [v for v in series if v is not None]
        return f"{values[-1]:,.0f}" if values else "-"

    lag = status.get("lag") or {}
    wm = [w for w in live["watermark_ms"] if w]
    behind = f"{(live['t_ms'][-1] - wm[-1]) / 1000:.1f} s behind wall time" if wm else "-"
    rows = [
        ("run", status.get("run") or "-"),
        ("running", str(status.get("running"))),
        ("ledger", ", ".join(f"{k} {v}" for k, v in (status.get("ledger") or {}).items()) or "-"),
        ("produced / replicated per second (last)",
         f"{last(live['produced_per_s'])} / {last(live['replicated_per_s'])}"),
        ("replication lag p50 / p99 (last 10 s, ms)",
         f"{last(live['lag_p50_ms'])} / {last(live['lag_p99_ms'])}"),
        ("lag per shard p50 / p99 (ms)", "; ".join(
            f"{s['shard'][-4:]} {s['p50']:.0f} / {s['p99']:.0f}" for s in live["per_shard"])
         or "-"),
        ("published watermark", f"{clock(wm[-1])} UTC, {behind}" if wm else "-"),
        ("records copied", str(lag.get("records_copied") or lag.get("changes_applied") or "-")),
        ("injected faults / drill steps", f"{live['faults']} / {len(live['drill'])}"),
    ]  # fmt: skip
    for r in requests:
        rows.append((f"{r['name']}: records per request",
                     f"{r['records_per_request']:.1f} ({r['records']:,} records in "
                     f"{r['requests']:,} requests, {r['bytes_per_record']:.0f} bytes a record)"))  # fmt: skip
    out = [{"figure": k, "value": v, "html": escape(v)} for k, v in rows]
    if status.get("verdict"):
        anomalies = ", ".join(f"{k} {v}" for k, v in (status.get("anomalies") or {}).items() if v)
        text = f"{status['verdict']} (exit {status.get('exit_code')}); anomalies: {anomalies or 'none'}"
        out.append({"figure": "verdict", "value": text,
                    "html": f'<span class="{escape(status["verdict"])}">{escape(text)}</span>'})  # fmt: skip
    if status.get("report_html"):
        out.append({"figure": "report", "value": "/xrh/report.html",
                    "html": '<a href="report.html" target="_blank">report.html</a>'})  # fmt: skip
    if status.get("error"):
        out.append({"figure": "error", "value": status["error"], "html": escape(status["error"])})
    return out


def request_records(environment: Any, counted: dict[str, int]) -> list[dict[str, Any]]:
    """Records per request for each request name whose records are counted, from Locust's
    request stats (requests, bytes) and the producers' counts (records)."""
    out = []
    for (name, method), entry in sorted((environment.runner.stats.entries or {}).items()):
        records = counted.get(name)
        if records and entry.num_requests:
            out.append({"type": method, "name": name, "requests": entry.num_requests,
                        "records": records, "records_per_request": records / entry.num_requests,
                        "bytes_per_record": entry.total_content_length / records})  # fmt: skip
    return out


def install(app: Any, status: Callable[[], dict[str, Any]], *, environment: Any = None,
            orchestrator: Callable[[], Any] | None = None,
            request_counts: Callable[[], dict[str, int]] | None = None) -> None:  # fmt: skip
    """Add the page, its JSON, the report and (with ``environment``) the Locust tab to a Flask
    app (Locust's ``environment.web_ui.app``); start sampling the run once a second."""
    from flask import Response, redirect, request, send_file

    history = LiveHistory(lambda: current_run(orchestrator() if orchestrator else None))
    counts = request_counts or dict

    def live() -> dict[str, Any]:
        out = history.snapshot()
        out["fault_events"] = history.faults
        return out

    @app.route("/xrh")
    def xrh_redirect() -> Any:
        return redirect("xrh/")  # relative: behind --web-base-path too

    @app.route("/xrh/")
    def xrh_page() -> Any:
        return PAGE

    @app.route("/xrh/status.json")
    def xrh_status() -> Any:
        return Response(json.dumps(status(), default=str), mimetype="application/json")

    @app.route("/xrh/live.json")
    def xrh_live() -> Any:
        data, st = live(), status()
        reqs = request_records(environment, counts()) if environment is not None else []
        body = {"status": st, "rows": summary_rows(st, data, reqs), "requests": reqs,
                "charts_html": charts_html(data),
                **{k: v for k, v in data.items() if k != "fault_events"}}  # fmt: skip
        return Response(json.dumps(body, default=str), mimetype="application/json")

    @app.route("/xrh/report.html")
    def xrh_report() -> Any:
        found = current_run(orchestrator() if orchestrator else None)
        if found is None or not found[0].file(runs.REPORT_HTML).is_file():
            return Response("no report yet: verify writes it when the run ends", status=404)
        return send_file(found[0].file(runs.REPORT_HTML).resolve(), mimetype="text/html",
                         max_age=0)  # fmt: skip

    @app.route("/xrh/tab.js")
    def xrh_tab_js() -> Any:
        return Response(TAB_JS % {"tab": TAB}, mimetype="application/javascript")

    if environment is None or environment.web_ui is None:
        return

    def merge_worker_counts(client_id: str, data: dict[str, Any], **_: Any) -> None:
        into = counts()
        for name, records in (data.get("xrh_request_records") or {}).items():
            into[name] = into.get(name, 0) + int(records)

    environment.events.worker_report.add_listener(merge_worker_counts)  # a master's workers
    environment.web_ui.template_args["extended_tabs"] = [{"title": "Replication", "key": TAB}]
    environment.web_ui.template_args["extended_tables"] = [{"key": TAB, "structure": [
        {"key": "figure", "title": "Replication"}, {"key": "value", "title": "Value"}]}]  # fmt: skip

    @app.after_request
    def extend(response: Any) -> Any:
        path = request.path.rstrip("/")
        if path.endswith("/stats/requests") and response.is_json:
            body = response.get_json()
            rows = summary_rows(status(), live(), request_records(environment, counts()))
            body["extended_stats"] = [{"key": TAB, "data": [
                {"figure": r["figure"], "value": r["value"]} for r in rows]}]  # fmt: skip
            response.set_data(json.dumps(body))
        elif request.path in ("/", "") and response.mimetype == "text/html":
            page = response.get_data(as_text=True)
            if "</body>" in page and "xrh/tab.js" not in page:
                response.set_data(page.replace("</body>", '<script src="./xrh/tab.js"></script>'
                                                          "</body>", 1))  # fmt: skip
        return response

    import gevent

    def sampler() -> None:
        while True:
            try:
                history.sample()
            except Exception as exc:  # noqa: BLE001 - a bad sample must not end the tab
                print(f"[xrh] web UI sample failed: {type(exc).__name__}: {exc}")
            gevent.sleep(SAMPLE_S)

    gevent.spawn(sampler)
