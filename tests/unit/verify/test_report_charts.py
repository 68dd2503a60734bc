"""verify.charts and the report's drill-down: axes with ticks and units, wall-clock times,
legends above the plot, fault and drill marks, a fault timeline from faults.jsonl, examples
per anomaly kind."""

from __future__ import annotations

import json
import re
from pathlib import Path

from verify import charts
from verify.html_report import anomaly_table, events_section, fault_events, render_html

T0 = 1_795_480_108_000  # 2026-11-24T00:28:28Z


def _numbers(svg: str, cls: str) -> list[str]:
    return re.findall(rf'class="{cls}"[^>]*>([^<]*)<', svg)


def test_time_chart_has_round_ticks_both_time_rows_and_its_unit():
    xs = [float(s) for s in range(0, 31)]
    svg = charts.line_chart("c", "t", xs, {"produced/s": [1000.0 + s for s in range(31)]},
                            "seconds since start", "records per second", t0_ms=T0)  # fmt: skip
    assert _numbers(svg, "x-tick")[:4] == ["0", "5", "10", "15"]  # not only 0 and the max
    assert _numbers(svg, "x-clock")[:2] == ["00:28:28", "00:28:33"]
    assert _numbers(svg, "y-tick") == ["0", "500", "1000", "1500"]
    assert "records per second" in svg and "seconds since start" in svg
    (points,) = re.findall(r'points="([^"]+)"', svg)
    assert len(points.split()) == 31


def test_y_label_stands_left_of_the_tick_labels_and_the_legend_above_the_plot():
    names = [f"a rather long series name {i}" for i in range(6)]
    svg = charts.line_chart("c", "t", [0.0, 1.0], {n: [1.0, 2.0] for n in names}, "s", "ms")
    label_x = float(re.search(r'class="y-label" transform="translate\(([\d.]+)', svg).group(1))
    tick_xs = [float(x) for x in re.findall(r'class="y-tick" x="([\d.]+)"', svg)]
    # a tick label ends (text-anchor end) at x; "1.2k" is at most 4 glyphs of ~6 px each
    assert label_x + 8 < min(tick_xs) - 4 * 6
    legend_ys = [float(y) for y in re.findall(r'<rect x="[\d.]+" y="([\d.]+)" width="10"', svg)]
    plot_top = min(float(y) for y in re.findall(r'class="y-tick" x="[\d.]+" y="([\d.]+)"', svg))
    assert len(set(legend_ys)) >= 2  # wrapped into rows
    assert max(legend_ys) + 10 < plot_top - 3
    legend_xs = [float(x) for x in re.findall(r'<rect x="([\d.]+)" y="[\d.]+" width="10"', svg)]
    assert max(legend_xs) < charts.W - charts.RIGHT


def test_fault_and_drill_marks_land_at_their_seconds():
    events = [{"at_ms": T0 + 2500, "side": "a", "operation": "PutRecords", "kind": "partial"},
              {"at_ms": T0 + 2900, "side": "a", "operation": "PutRecords", "kind": "partial"},
              {"at_ms": T0 + 7000, "side": "b", "operation": "PutRecords", "kind": "throttle"}]  # fmt: skip
    marks = charts.fault_marks(events, T0)
    assert [(m[0], m[2]) for m in marks] == [(2.0, "fault"), (7.0, "fault")]
    assert "2 a:PutRecords:partial" in marks[0][1]
    steps = [{"at_ms": T0 + 4000, "action": "pause", "arg": "b"},
             {"at_ms": T0, "action": "drill", "arg": "x"}]  # fmt: skip
    assert charts.drill_marks(steps, T0) == [(4.0, "pause b", "drill")]
    svg = charts.line_chart("c", "t", [0.0, 10.0], {"x": [1.0, 1.0]}, "s", "ms",
                            marks=marks + charts.drill_marks(steps, T0))  # fmt: skip
    assert svg.count('class="mark-fault"') == 2 and svg.count('class="mark-drill"') == 1


def test_fault_timeline_counts_faults_per_second_by_kind():
    events = [{"at_ms": T0 + 1000 * s + 10, "kind": "partial"} for s in (1, 1, 1, 4)]
    events.append({"at_ms": T0 + 4100, "kind": "throttle"})
    svg = charts.fault_timeline_chart("f", events, T0, x_hi_s=6)
    lines = dict(re.findall(r'points="([^"]+)" data-series="([^"]+)"', svg)[i][::-1]
                 for i in range(2))  # fmt: skip
    def heights(points: str) -> list[float]:
        return [float(p.split(",")[1]) for p in points.split()]

    partial, throttle = heights(lines["partial /s"]), heights(lines["throttle /s"])
    assert len(partial) == 7  # seconds 0..6
    assert partial[1] < partial[4] < partial[0] == partial[2]  # 3 at second 1, 1 at second 4
    assert throttle[4] < throttle[0]


def _report(anomalies: dict, run_id: str = "r1") -> dict:
    rates = [{"t_ms": T0 + 1000 * s, "produced_per_s": 100.0, "replicated_per_s": 90.0}
             for s in range(20)]  # fmt: skip
    buckets = [{"t_ms": T0 + 1000 * s, "avg": 10, "max": 20} for s in range(20)]
    return {"run_id": run_id, "pipeline": "kinesis", "verdict": "invalid", "reasons": [],
            "started_at": "a", "finished_at": "b", "counts": {"acknowledged": 1},
            "anomalies": anomalies, "lag_ms": {"p50": 1}, "watermark": {"claimed": None,
            "verified": None}, "details": {"rates": rates, "lag_over_time": {"buckets": buckets},
            "lag_per_shard": [{"shard": "s-1", "p50": 1, "p99": 2, "max": 3}]}}  # fmt: skip


def test_each_anomaly_kind_has_its_examples_with_key_trace_shard_and_sequence_numbers():
    example = {"trace": "p-7", "key": 42, "source_shard": "shardId-1",
               "source_sequence_number": "1007", "target_shard": "shardId-2",
               "target_sequence_number": "88", "source_value": {"a": 1}}  # fmt: skip
    html = anomaly_table(_report({"lost": {"count": 3, "examples": [example]},
                                  "duplicated": {"count": 0, "examples": []}}))  # fmt: skip
    section = re.search(r'<details class="drilldown" id="drill-lost" open>.*?</details>', html)
    assert section is not None and 'id="drill-duplicated"' not in html
    heads = re.findall(r"<th>([^<]+)</th>", section.group(0))
    assert heads[:6] == ["key", "trace", "source_shard", "source_sequence_number",
                         "target_shard", "target_sequence_number"]  # fmt: skip
    for value in ("p-7", "42", "shardId-1", "1007", "shardId-2", "88", "&quot;a&quot;: 1"):
        assert value in section.group(0)


def test_the_fault_timeline_is_read_from_the_runs_faults_log(tmp_path: Path):
    (tmp_path / "faults.jsonl").write_text(
        "".join(json.dumps({"at_ms": T0 + 1000 * s, "kind": "partial", "side": "a",
                            "operation": "PutRecords"}) + "\n" for s in (3, 3, 9))  # fmt: skip
        + '{"at_ms": 17958'  # a torn last line is skipped
    )
    report = _report({})
    assert len(fault_events(report, tmp_path)) == 3
    page = render_html(report, run_dir=tmp_path)
    assert 'id="chart-faults"' in page and page.count('class="mark-fault"') == 2 * 2
    assert "00:28:28" in page  # wall-clock ticks
    # the same report without faults: no timeline, no marks
    empty = tmp_path / "none"
    empty.mkdir()
    assert 'id="chart-faults"' not in render_html(report, run_dir=empty)
    assert events_section(report, T0, run_dir=empty) == ""
