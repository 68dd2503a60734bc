"""Each check catches its planted fault and stays quiet on a clean copy."""

from __future__ import annotations

from verify_planting import T0, payload

from verify.checks import (
    check_diverged,
    check_duplicated,
    check_lost,
    check_phantom,
    check_reordered,
    counts,
    verified_watermark,
)
from verify.model import StoreSide, Verdict
from verify.reconcile import decide, reconcile

SRC, TGT = StoreSide.SOURCE, StoreSide.TARGET


def clean(planted, n=20, keys=3):
    for i in range(n):
        trace = f"p0-{i:09d}"
        planted.ledger(trace, i % keys, commit=T0 + i * 10)
        planted.both(trace, i % keys, arrival=T0 + i * 10, commit=T0 + i * 10)


def test_clean_copy_has_no_anomaly_and_is_valid(planted):
    clean(planted)
    result = reconcile(planted.done())
    assert {k: a.count for k, a in result.anomalies.items()} == dict.fromkeys(result.anomalies, 0)
    assert decide(result.anomalies).verdict is Verdict.VALID
    assert result.counts["acknowledged"] == 20
    assert result.lag.overall["p50"] == 10


def test_lost_acknowledged_record_is_named(planted):
    clean(planted)
    planted.ledger("p0-lost", 7)
    planted.put(SRC, "p0-lost", 7, arrival=T0 + 500)
    lost = check_lost(planted.done())
    assert lost.count == 1
    (example,) = lost.examples
    assert example["trace"] == "p0-lost"
    assert example["key"] == "7"
    assert example["in_source"] is True
    assert example["source_shard"] == "shardId-000000000000"
    assert example["source_sequence_number"] == "21"


def test_acknowledged_but_absent_from_source_is_lost_and_flagged(planted):
    clean(planted)
    planted.ledger("p0-gone", 8)
    lost = check_lost(planted.done())
    assert lost.count == 1
    assert lost.details["acknowledged_missing_from_source"] == 1
    assert lost.examples[0]["in_source"] is False


def test_unknown_write_absent_everywhere_is_not_lost_and_present_is_fine(planted):
    clean(planted)
    planted.ledger("p0-unk1", 1, status="unknown")
    planted.ledger("p0-unk2", 2, status="unknown")
    planted.both("p0-unk2", 2, arrival=T0 + 900)
    db = planted.done()
    assert check_lost(db).count == 0
    assert check_phantom(db).count == 0
    assert counts(db)["unknown"] == 2


def test_retried_trace_with_a_failed_then_ok_attempt_is_acknowledged(planted):
    planted.ledger("p0-r", 1, status="fail")
    planted.ledger("p0-r", 1, status="ok")
    db = planted.done()
    assert counts(db)["acknowledged"] == 1
    assert check_lost(db).count == 1


def test_poison_record_dead_lettered_with_its_data_is_accounted_for_not_lost(planted):
    clean(planted)
    planted.ledger("p0-dl", 4)
    planted.put(SRC, "p0-dl", 4, arrival=T0 + 700)
    planted.store.add_dead_letter("4", payload("p0-dl", 4, T0), "too large", "s3://b/k")
    lost = check_lost(planted.done())
    assert lost.count == 0
    assert lost.details["dead_lettered_with_data"] == 1


def test_dead_letter_for_a_transient_failure_or_without_data_does_not_excuse_a_loss(planted):
    clean(planted)
    for trace, key in (("p0-t", 4), ("p0-m", 5)):
        planted.ledger(trace, key)
        planted.put(SRC, trace, key, arrival=T0 + 700)
    planted.store.add_dead_letter(
        "4", payload("p0-t", 4, T0), "ProvisionedThroughputExceededException: Rate exceeded",
        "s3://b/k1",
    )  # fmt: skip
    planted.store.add_dead_letter("5", None, "too large", "s3://b/k2")  # metadata only
    lost = check_lost(planted.done())
    assert lost.count == 2
    reasons = {e["trace"]: e.get("dead_letter_reason") for e in lost.examples}
    assert reasons["p0-t"].startswith("ProvisionedThroughputExceeded")


def test_phantom_is_in_target_only(planted):
    clean(planted)
    planted.put(TGT, "zz-1", 5, arrival=T0 + 5)
    phantom = check_phantom(planted.done())
    assert phantom.count == 1
    assert phantom.examples[0]["trace"] == "zz-1"


def test_record_without_trace_is_identified_by_key_and_data(planted):
    planted.put(SRC, "", 1, arrival=T0, data=b"not json")
    planted.put(TGT, "", 1, arrival=T0 + 1, data=b"not json")
    planted.put(TGT, "", 1, arrival=T0 + 2, data=b"other bytes")
    db = planted.done()
    assert check_lost(db).count == 0
    assert check_phantom(db).count == 1


def test_duplicates_counted_per_record_and_in_total(planted):
    clean(planted)
    planted.put(TGT, "p0-000000003", 0, arrival=T0 + 999, commit=T0 + 30)
    planted.put(TGT, "p0-000000003", 0, arrival=T0 + 999, commit=T0 + 30)
    planted.put(TGT, "p0-000000004", 1, arrival=T0 + 999, commit=T0 + 40)
    dup = check_duplicated(planted.done())
    assert dup.count == 2
    assert dup.details["extra_copies"] == 3
    first = dup.examples[0]
    assert first["trace"] == "p0-000000003" and first["target_copies"] == 3
    assert len(first["target_copies_at"].split()) == 3


def test_duplicates_are_fatal_only_by_flag(planted):
    clean(planted)
    # A second copy of key 0's newest record: its last copy stays in source order. (A late copy
    # of an older record, such as p0-000000003, would leave a stale final state: reordered.)
    planted.put(TGT, "p0-000000018", 0, arrival=T0 + 999, commit=T0 + 180)
    result = reconcile(planted.done())
    assert decide(result.anomalies).verdict is Verdict.VALID
    assert decide(result.anomalies, fatal_duplicates=True).verdict is Verdict.INVALID


def test_source_duplicates_copied_faithfully_are_not_replication_duplicates(planted):
    planted.put(SRC, "p0-1", 1, arrival=T0)
    planted.put(SRC, "p0-1", 1, arrival=T0 + 1)
    planted.put(TGT, "p0-1", 1, arrival=T0 + 5)
    planted.put(TGT, "p0-1", 1, arrival=T0 + 6)
    dup = check_duplicated(planted.done())
    assert dup.count == 0
    assert dup.details["source_duplicated_records"] == 1


def test_swapped_records_of_one_key_are_reordered_with_both_named(planted):
    for i, trace in enumerate(["a-1", "a-2", "a-3"]):
        planted.put(SRC, trace, 42, arrival=T0 + i)
    planted.put(SRC, "b-1", 43, arrival=T0 + 3)
    for trace in ["a-1", "a-3", "b-1", "a-2"]:
        planted.put(TGT, trace, 42 if trace[0] == "a" else 43, arrival=T0 + 10)
    reordered = check_reordered(planted.done())
    assert reordered.count == 1
    (example,) = reordered.examples
    assert example["trace"] == "a-2"
    assert example["overtaken_by"]["trace"] == "a-3"
    assert example["key"] == "42"
    assert example["record"]["target_sequence_number"] == "4"


def test_resend_after_partial_failure_is_in_order_and_counted_as_healed(planted):
    # PutRecords failed a1 and accepted a2; the replicator resent a1 then a2: target a2, a1, a2.
    planted.put(SRC, "a-1", 42, arrival=T0)
    planted.put(SRC, "a-2", 42, arrival=T0 + 1)
    for trace in ["a-2", "a-1", "a-2"]:
        planted.put(TGT, trace, 42, arrival=T0 + 10)
    reordered = check_reordered(planted.done())
    assert reordered.count == 0
    assert reordered.examples == ()
    assert reordered.details["healed_by_later_copy"] == 1


def test_stale_last_copy_is_reordered(planted):
    # Target a1, a2, a1: first arrivals look right, but the final state has a1 after a2.
    planted.put(SRC, "a-1", 42, arrival=T0)
    planted.put(SRC, "a-2", 42, arrival=T0 + 1)
    for trace in ["a-1", "a-2", "a-1"]:
        planted.put(TGT, trace, 42, arrival=T0 + 10)
    reordered = check_reordered(planted.done())
    assert reordered.count == 1
    (example,) = reordered.examples
    assert example["trace"] == "a-1"
    assert example["overtaken_by"]["trace"] == "a-2"
    assert example["record"]["target_sequence_number"] == "3"
    assert example["overtaken_by"]["target_sequence_number"] == "2"
    assert reordered.details["healed_by_later_copy"] == 0


def test_swap_without_duplicates_heals_nothing(planted):
    planted.put(SRC, "a-1", 42, arrival=T0)
    planted.put(SRC, "a-2", 42, arrival=T0 + 1)
    planted.put(TGT, "a-2", 42, arrival=T0 + 10)
    planted.put(TGT, "a-1", 42, arrival=T0 + 10)
    reordered = check_reordered(planted.done())
    assert reordered.count == 1 and reordered.details["healed_by_later_copy"] == 0


def test_order_compares_sequence_numbers_as_integers(planted):
    # "9" < "10" as integers; as text it would look reordered.
    store = planted.store
    from verify.model import StreamRecord

    for side, seqs in ((SRC, ("9", "10")), (TGT, ("99", "100"))):
        for n, seq in enumerate(seqs):
            store.add(side, StreamRecord("s", 0, seq, "1", payload(f"x-{n}", 1, T0), T0))
    assert check_reordered(planted.done()).count == 0


def test_parent_shard_precedes_child_in_order(planted):
    from verify.model import StreamRecord

    store = planted.store
    store.add(SRC, StreamRecord("parent", 0, "900", "1", payload("x-0", 1, T0), T0))
    store.add(SRC, StreamRecord("child", 1, "5", "1", payload("x-1", 1, T0), T0))
    store.add(TGT, StreamRecord("t", 0, "1", "1", payload("x-0", 1, T0), T0))
    store.add(TGT, StreamRecord("t", 0, "2", "1", payload("x-1", 1, T0), T0))
    assert check_reordered(planted.done()).count == 0


def test_diverged_data_under_the_same_trace(planted):
    planted.put(SRC, "p-1", 1, arrival=T0)
    planted.put(TGT, "p-1", 1, arrival=T0, data=payload("p-1", 1, T0, extra="changed"))
    planted.put(SRC, "p-2", 2, arrival=T0)
    planted.put(TGT, "p-2", 2, arrival=T0, pk="other")
    diverged = check_diverged(planted.done())
    assert diverged.count == 2
    assert {e["difference"] for e in diverged.examples} == {
        "data differs",
        "partition key differs",
    }


def test_verified_watermark_stops_below_the_oldest_missing_record(planted):
    clean(planted)
    planted.put(SRC, "p0-late", 1, arrival=T0 + 50, commit=T0 + 55)
    assert verified_watermark(planted.done()) == T0 + 54


def test_unfinished_read_makes_unknown_even_with_anomalies(planted):
    clean(planted)
    planted.ledger("p0-lost", 1)
    result = reconcile(planted.done())
    assert decide(result.anomalies).verdict is Verdict.INVALID
    unknown = decide(result.anomalies, incomplete=["shard X not read to its end"])
    assert unknown.verdict is Verdict.UNKNOWN
    assert unknown.reasons == ["shard X not read to its end"]


def test_incomplete_ledger_without_anomalies_is_unknown(planted):
    clean(planted)
    result = reconcile(planted.done())
    decision = decide(result.anomalies, ledger_incomplete="ledger not complete")
    assert decision.verdict is Verdict.UNKNOWN
