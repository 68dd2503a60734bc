"""The consumers' lag over time from consumer-lag.jsonl: percentiles per consumer, a series
per time bucket, the lazy consumer's as the report's lag_ms; no file is a note."""

from __future__ import annotations

import json

from verify.actions.html import lag_charts
from verify.actions.lag import lag_report, load_lag
from verify.actions.store import ActionStore


def _line(consumer, ts_ms, shard, behind, applied=None):
    return json.dumps({"ts_ms": ts_ms, "consumer": consumer, "shard_id": shard,
                       "millis_behind_latest": behind, "applied_arrival_ms": applied})  # fmt: skip


def test_lag_per_consumer_over_time_and_the_lazy_one_as_lag_ms(tmp_path):
    lines = []
    for second in range(10):
        for shard in ("s0", "s1"):
            lines.append(_line("fast", 1_000_000 + second * 1000, shard, 5))
            lines.append(_line("lazy", 1_000_000 + second * 1000, shard,
                               100 * second + (50 if shard == "s1" else 0)))  # fmt: skip
    lines.append("{not json")
    (tmp_path / "consumer-lag.jsonl").write_text("\n".join(lines) + "\n")
    store = ActionStore(":memory:")
    found = load_lag(store, tmp_path)
    assert found["samples"] == 40 and found["unreadable_lines"] == 1
    lag, source = lag_report(store, found)
    assert lag["max"] == 950 and lag["p50"] in (450, 500) and "lazy" in source
    lazy = found["over_time"]["series"]["lazy"]
    assert [p["max"] for p in lazy] == [100 * s + 50 for s in range(10)]
    assert found["consumers"]["fast"]["max"] == 5
    assert found["consumers"]["lazy"]["writes_region"] == "B"
    html = lag_charts(found)
    assert 'id="chart-lag-lazy"' in html and 'id="chart-lag-fast"' in html


def test_no_lag_file_is_a_note_not_an_error(tmp_path):
    store = ActionStore(":memory:")
    found = load_lag(store, tmp_path)
    lag, source = lag_report(store, found)
    assert found["file"] is False and "no consumer-lag.jsonl" in source
    assert lag == {"p50": None, "p90": None, "p99": None, "max": None}
    assert "no consumer-lag.jsonl" in lag_charts(found)
