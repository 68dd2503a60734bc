"""Re-checking an action-log run from its stores (no endpoint): when the stores hold a complete
read (:func:`verify.actions.stored.incomplete_reason`), and the verdict judged again from them
matching the judge's over the same rows; an incomplete store is ``unknown``, saying why."""

from __future__ import annotations

import json
from pathlib import Path

from test_action_support import Log, folded, wire

from verify.actions.checks import judge
from verify.actions.compare import FOUND, open_stores, store_path
from verify.actions.fold import add_record, fold
from verify.actions.items import table_row
from verify.actions.store import ActionStore
from verify.actions.stored import Stored, incomplete_reason, mark_complete
from verify.model import Verdict
from verify.runner import READ_COMPLETE, run_verify, stored_read_at
from xrh.config import HarnessConfig, Side

CONFIG = HarnessConfig(pipeline="action-log")
RUN_ID = "20260101T000000Z-abcdef"


def _log() -> Log:
    log = Log()
    log.put("k1", a=1)
    log.update("k1", add={"n": 2})
    log.put("k2", v="one")
    log.put("k2", v="two")
    log.put("k3", v=1)
    log.delete("k3")
    return log


def _read(run_dir: Path, *, faulty: bool = False, mark: bool = True) -> dict:
    """What a live verify leaves: the log folded in verify.sqlite, each region's table in its
    item store compared with the fold (``faulty``: B lacks k2 and counts k1's ADD twice);
    marked complete if ``mark``. The judge's counts."""
    store = ActionStore(run_dir / "verify.sqlite")
    for record in _log().records:
        add_record(store, record)
    store.flush()
    fold(store)
    stores = open_stores(run_dir, store)
    items = folded(store)
    b_items = dict(items)
    if faulty:
        b_items["k1"] = {**items["k1"], "n": 4}
        del b_items["k2"]
    tables = {Side.A: list(items.values()), Side.B: list(b_items.values())}
    for side, items in tables.items():
        stores[side].add_items(
            FOUND, [table_row({k: wire(v) for k, v in i.items()}) for i in items]
        )
        stores[side].compare()
    compared = {side.name: ("xrh-items", stores[side].db) for side in stores}
    judgement = judge(store.db, compared, own_prefix=None)
    details = {"notes": [], "tables": {"B": {"items": len(b_items)}},
               "consumer_lag": {"file": False, "note": "no lag file"}}  # fmt: skip
    if mark:
        mark_complete(store, stores, details, {"table": "xrh-items", "own_prefix": None})
    for item_store in stores.values():
        item_store.close()
    store.close()
    return {k: a.count for k, a in judgement.anomalies.items() if a.count}


def _run_dir(tmp_path: Path) -> Path:
    run_dir = tmp_path / RUN_ID
    run_dir.mkdir(parents=True)
    return run_dir


def test_complete_only_when_every_store_holds_the_same_marked_read(tmp_path: Path) -> None:
    run_dir = _run_dir(tmp_path)
    assert "no verify.sqlite" in incomplete_reason(run_dir)
    _read(run_dir, mark=False)
    assert "holds no complete read" in incomplete_reason(run_dir)
    assert stored_read_at(run_dir) is None  # what `xrh verify` looks at to choose the store
    _read(run_dir)
    assert incomplete_reason(run_dir) is None
    assert stored_read_at(run_dir) is not None
    stored = Stored(run_dir)
    try:
        assert stored.options == {"table": "xrh-items", "own_prefix": None}
        assert stored.read_at == stored.store.get_meta(READ_COMPLETE)
    finally:
        stored.close()
    store_path(run_dir, Side.B).unlink()
    assert "no verify-items-b.sqlite" in incomplete_reason(run_dir)
    open_stores(run_dir, ActionStore(":memory:"))[Side.B].close()  # another read's store
    assert "is not from the read" in incomplete_reason(run_dir)


def test_from_store_gives_the_judges_verdict_without_the_network(tmp_path: Path) -> None:
    run_dir = _run_dir(tmp_path)
    counts = _read(run_dir, faulty=True)
    assert counts == {"double_applied": 1, "lost": 1}
    result = run_verify(run_dir, CONFIG, timeout_s=5, progress=False, from_store=True)
    assert result.verdict is Verdict.INVALID and result.exit_code == 1
    report = result.report
    assert {k: a["count"] for k, a in report["anomalies"].items() if a["count"]} == counts
    assert report["details"]["from_store"]["read_at"]
    assert any("re-checked from verify.sqlite" in n for n in report["details"]["notes"])
    assert report["counts"]["target_records"] == 1
    assert json.loads((run_dir / "report.json").read_text())["verdict"] == "invalid"

    valid = _run_dir(tmp_path / "v")
    _read(valid)
    result = run_verify(valid, CONFIG, timeout_s=5, progress=False, from_store=True)
    assert result.verdict is Verdict.VALID and result.exit_code == 0


def test_from_store_of_an_incomplete_store_is_unknown_saying_so(tmp_path: Path) -> None:
    run_dir = _run_dir(tmp_path)
    result = run_verify(run_dir, CONFIG, timeout_s=5, progress=False, from_store=True)
    assert result.verdict is Verdict.UNKNOWN and result.exit_code == 2
    assert "cannot re-check from the store: no verify.sqlite" in result.report["reasons"][0]
    _read(run_dir, mark=False)
    result = run_verify(run_dir, CONFIG, timeout_s=5, progress=False, from_store=True)
    assert result.verdict is Verdict.UNKNOWN
    assert "holds no complete read" in result.report["reasons"][0]


def test_no_endpoint_says_there_is_no_stored_read_either(tmp_path: Path) -> None:
    run_dir = _run_dir(tmp_path)
    result = run_verify(run_dir, CONFIG, timeout_s=5, progress=False)
    assert result.verdict is Verdict.UNKNOWN
    assert result.report["reasons"][0] == "no endpoint to read from"
    assert any("no complete earlier read" in r for r in result.report["reasons"])
