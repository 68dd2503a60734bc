"""The web UI's replication page: ``/xrh`` (a page) and ``/xrh/status.json`` (what it polls).

Shows the run, the ledger's counts, the replicator's lag (from ``replicator-metrics.json``) and,
once verify has run, the verdict with its counts. Plain Flask routes on Locust's app.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from loadgen.orchestrator import read_lag

if TYPE_CHECKING:
    from loadgen.orchestrator import Orchestrator

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>xrh replication</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
h1{font-size:1.3em} table{border-collapse:collapse} td,th{padding:.3em .8em;border-bottom:1px solid #ddd;text-align:left}
.valid{color:#080;font-weight:bold}.invalid{color:#b00;font-weight:bold}.unknown{color:#b60;font-weight:bold}
#lag{width:600px;height:160px;border:1px solid #ccc}
</style></head><body>
<h1>Cross-region replication</h1>
<p><a href="/">&larr; Locust</a></p>
<table id="t"></table>
<h2>Replication lag (max commit lag, ms)</h2>
<canvas id="lag" width="600" height="160"></canvas>
<script>
const points=[];
function row(k,v){return `<tr><th>${k}</th><td>${v}</td></tr>`}
async function tick(){
  let s; try{ s=await (await fetch('status.json')).json(); }catch(e){ return; }
  const lag=s.lag||{}, led=s.ledger||{};
  let html=row('run',s.run||'-')+row('stream',s.stream||'-')+row('running',s.running)
    +row('ledger',Object.entries(led).map(([k,v])=>k+' '+v).join(', ')||'-')
    +row('records copied',lag.records_copied??'-')+row('max commit lag (ms)',lag.commit_lag_ms_max??'-')
    +row('max millis behind latest',lag.millis_behind_latest_max??'-');
  if(s.verdict){html+=row('verdict',`<span class="${s.verdict}">${s.verdict}</span> (exit ${s.exit_code})`);
    const r=s.report||{}; html+=row('reasons',(r.reasons||[]).join('<br>')||'-')
    +row('counts',JSON.stringify(r.counts||{}))+row('anomalies',JSON.stringify(s.anomalies||{}))
    +row('lag_ms',JSON.stringify(r.lag_ms||{}));}
  if(s.error){html+=row('error',s.error);}
  document.getElementById('t').innerHTML=html;
  if(s.running&&lag.commit_lag_ms_max!=null){points.push(lag.commit_lag_ms_max); if(points.length>300)points.shift();}
  const c=document.getElementById('lag').getContext('2d'); c.clearRect(0,0,600,160);
  const m=Math.max(1,...points); c.beginPath();
  points.forEach((p,i)=>{const x=i*2,y=155-150*p/m; i?c.lineTo(x,y):c.moveTo(x,y)}); c.stroke();
  c.fillText('max '+m+' ms',5,12);
}
setInterval(tick,1000); tick();
</script></body></html>
"""


def run_status(orch: Orchestrator | None, error: str | None) -> dict[str, Any]:
    """What ``/xrh/status.json`` answers: the run in progress (else the last one), its ledger
    counts and lag, and once verify has run its verdict, reasons and anomaly counts."""
    state = orch.state or orch.last if orch else None
    out: dict[str, Any] = {"running": bool(orch and orch.state), "error": error}
    if state is not None:
        out.update(run=state.run.run_id, stream=orch.stream if orch else None,
                   lag=read_lag(state.run), ledger=state.ledger.counts, verdict=state.verdict,
                   exit_code=state.exit_code)  # fmt: skip
        if state.report:
            out["report"] = {
                k: state.report.get(k) for k in ("verdict", "reasons", "counts", "lag_ms")
            }
            out["anomalies"] = {
                k: v.get("count") for k, v in (state.report.get("anomalies") or {}).items()
            }
    return out


def install(app: Any, status: Callable[[], dict[str, Any]]) -> None:
    """Add the page and its JSON to a Flask app (Locust's ``environment.web_ui.app``)."""
    from flask import jsonify

    @app.route("/xrh")
    @app.route("/xrh/")
    def xrh_page() -> Any:
        return PAGE

    @app.route("/xrh/status.json")
    def xrh_status() -> Any:
        return jsonify(status())
