"""Each action-log check catching a planted fault, over small in-memory logs and tables (no
endpoint): the fold is the expected table, a region's items are compared with it by the table
pipelines' digests, and every differing key is judged once."""

from __future__ import annotations

from decimal import Decimal

from test_action_support import Log, compared, folded

from verify.actions.checks import explain, judge
from xrh.config import Side

TS = "2021-11-10T00:48:30.123Z"


def _log() -> tuple[Log, dict[str, str]]:
    log = Log()
    traces = {
        "p1": log.put("k1", a=1),
        "u1": log.update("k1", add={"n": 2}),
        "u2": log.update("k1", add={"n": 3}),
        "p2": log.put("k2", v="one"),
        "p3": log.put("k2", v="two"),
        "p4": log.put("k3", v=1.5),
        "d4": log.delete("k3"),
    }
    return log, traces


def _counts(judgement) -> dict[str, int]:
    return {k: a.count for k, a in judgement.anomalies.items() if a.count}


def _run(log, a_items, b_items, ledger=()):
    store = log.store()
    store.add_ledger_rows(ledger)
    return store, judge(store.db, compared(store, {Side.A: a_items, Side.B: b_items}),
                        own_prefix="run/")  # fmt: skip


def test_tables_equal_to_the_fold_are_clean_whatever_the_bookkeeping_and_number_forms():
    log, _ = _log()
    store = log.store()
    items = list(folded(store).values())
    b_items = [{**item, "xrh_applied": "49590338271490256608559692538361571095921575989136"}
               for item in items]  # fmt: skip
    b_items[0]["n"] = Decimal("5.000")  # Decimal versus int: the same number
    judgement = judge(store.db, compared(store, {Side.A: items, Side.B: b_items}))
    assert _counts(judgement) == {}


def test_lost_a_folded_key_missing_from_a_table():
    log, traces = _log()
    store = log.store()
    items = list(folded(store).values())
    judgement = judge(store.db, compared(store, {Side.A: items, Side.B: items[1:]}))
    assert _counts(judgement) == {"lost": 1}
    (example,) = judgement.anomalies["lost"].examples
    assert example["region"] == "B" and example["key"] == {"pk": "k1"}
    assert example["trace"] == traces["u2"] and example["sequence_number"] == "3"
    assert example["found"] is None and example["expected"]["n"] == 5


def test_lost_an_acknowledged_action_absent_from_the_stream():
    log, _ = _log()
    store = log.store()
    items = list(folded(store).values())
    store.add_ledger_rows([
        ("run/w0u1-000000001", "k1", "put", "ok", "shardId-000000000000", "1", None),
        ("run/w0u1-000000099", "k9", "update", "ok", "shardId-000000000000", "99", None),
        ("run/w0u1-000000098", "k8", "put", "unknown", None, None, None),  # never lost
        ("run/w0u1-000000097", "k7", "put", "fail", None, None, None),
    ])  # fmt: skip
    judgement = judge(store.db, compared(store, {Side.A: items, Side.B: items}))
    assert _counts(judgement) == {"lost": 1}
    (example,) = judgement.anomalies["lost"].examples
    assert example["reason"] == "acknowledged_not_in_stream"
    assert example["trace"] == "run/w0u1-000000099" and example["key"] == {"pk": "k9"}
    assert example["sequence_number"] == "99"


def test_phantom_an_item_the_log_never_touched_foreign_ones_counted_apart():
    log, _ = _log()
    store = log.store()
    items = list(folded(store).values())
    mine = {"pk": "k99", "v": 1, "trace": "run/w9u9-000000001"}
    theirs = {"pk": "k98", "v": 1, "trace": "other-run/w0u1-000000001"}
    judgement = judge(store.db, compared(store, {Side.A: items, Side.B: [*items, mine, theirs]}),
                      own_prefix="run/")  # fmt: skip
    assert _counts(judgement) == {"phantom": 1}
    assert judgement.anomalies["phantom"].examples[0]["key"] == {"pk": "k99"}
    assert judgement.details["foreign_items"] == 1


def test_stale_an_earlier_state_and_an_item_the_log_deleted():
    log, traces = _log()
    store = log.store()
    items = folded(store)
    old_k2 = {"pk": "k2", "v": "one", "trace": traces["p2"], "commitTimestamp": TS}
    old_k3 = {"pk": "k3", "v": 1.5, "trace": traces["p4"], "commitTimestamp": TS}
    b_items = [items["k1"], old_k2, old_k3]
    judgement = judge(store.db, compared(store, {Side.A: list(items.values()), Side.B: b_items}))
    assert _counts(judgement) == {"stale": 2}
    by_key = {e["key"]["pk"]: e for e in judgement.anomalies["stale"].examples}
    assert by_key["k2"]["reason"] == "older_state"
    assert by_key["k2"]["found_state_of"]["trace"] == traces["p2"]
    assert by_key["k2"]["trace"] == traces["p3"] and by_key["k2"]["expected"]["v"] == "two"
    assert by_key["k3"]["reason"] == "deleted_in_log" and by_key["k3"]["expected"] is None


def test_double_applied_an_add_replayed_once_or_a_run_of_them():
    log, traces = _log()
    store = log.store()
    items = folded(store)
    once = {**items["k1"], "n": 8}  # 5 + the last ADD again
    judgement = judge(store.db, compared(store, {Side.A: [once, items["k2"]],
                                                  Side.B: [{**items["k1"], "n": 10},
                                                           items["k2"]]}))  # fmt: skip
    assert _counts(judgement) == {"double_applied": 2}
    by_region = {e["region"]: e for e in judgement.anomalies["double_applied"].examples}
    (attr,) = by_region["A"]["attributes"]
    assert attr["attribute"] == "n" and attr["off_by"] == 3
    assert [r["trace"] for r in attr["replayed"]] == [traces["u2"]]
    assert [r["trace"] for r in by_region["B"]["attributes"][0]["replayed"]] == [
        traces["u1"], traces["u2"]]  # fmt: skip
    assert by_region["A"]["key"] == {"pk": "k1"}


def test_diverged_anything_else_and_an_off_number_no_add_explains():
    log, _ = _log()
    store = log.store()
    items = folded(store)
    judgement = judge(store.db, compared(store, {
        Side.A: [{**items["k1"], "n": 6}, items["k2"]],  # off by 1: no ADD of 1
        Side.B: [items["k1"], {**items["k2"], "v": "three"}]}))  # fmt: skip
    assert _counts(judgement) == {"diverged": 2}
    assert {e["key"]["pk"] for e in judgement.anomalies["diverged"].examples} == {"k1", "k2"}


def test_an_add_before_a_reset_does_not_explain_a_difference():
    log = Log()
    log.put("k", n=0)
    log.update("k", add={"n": 7})
    log.update("k", set={"n": 1})  # n starts again: the 7 cannot be replayed into it
    store = log.store()
    item = folded(store)["k"]
    judgement = judge(store.db, compared(store, {Side.A: [{**item, "n": 8}], Side.B: [item]}))
    assert _counts(judgement) == {"diverged": 1}


def test_explain_finds_single_runs_and_subsets():
    d = [Decimal(x) for x in (1, 2, 4, 8)]
    assert explain(Decimal(2), d) == [1]
    assert explain(Decimal(6), d) == [1, 2]
    assert explain(Decimal(9), d) == [0, 3]
    assert explain(Decimal(16), d) is None
    assert explain(Decimal(0), d) is None
