"""The DynamoDB Streams reader against a scriptable fake (shard lineage, paging, throttling,
expired and trimmed iterators, the deadline, resuming), and the chunk-digest comparison of the
table store (a differing chunk found, equal tables skip per-key work, settle updates)."""

from __future__ import annotations

import json

from verify_fakes import client_error

from verify.table_reader import canonical_json, traced_item_row
from verify.tables.store import TableStore
from verify.tables.stream_reader import TableStreamReader, order_key


def record(seq: int, pk: str, event: str = "INSERT", trace: str | None = None) -> dict:
    body = {"SequenceNumber": str(seq), "Keys": {"pk": {"S": pk}},
            "ApproximateCreationDateTime": 1636505310.5}  # fmt: skip
    if event != "REMOVE":
        body["NewImage"] = {"pk": {"S": pk}, "trace": {"S": trace or f"t{seq}"}}
    return {"eventName": event, "awsRegion": "us-east-1", "dynamodb": body}


class FakeStreams:
    """Shards as (parent, closed, records); iterators are 'shard:position'; ``faults`` scripts
    an error code by GetRecords call number."""

    def __init__(self, shards, *, page=2, faults=None, describe_page=1):
        self.shards = shards
        self.page = page
        self.faults = dict(faults or {})
        self.describe_page = describe_page
        self.calls = 0
        self.order: list[str] = []

    def describe_stream(self, StreamArn, ExclusiveStartShardId=None):
        ids = sorted(self.shards)
        start = ids.index(ExclusiveStartShardId) + 1 if ExclusiveStartShardId else 0
        out = []
        for sid in ids[start : start + self.describe_page]:
            parent, closed, records = self.shards[sid]
            rng = {"StartingSequenceNumber": "1"}
            if closed:
                rng["EndingSequenceNumber"] = "999"
            out.append({"ShardId": sid, "SequenceNumberRange": rng,
                        **({"ParentShardId": parent} if parent else {})})  # fmt: skip
        desc = {"Shards": out}
        if start + self.describe_page < len(ids):
            desc["LastEvaluatedShardId"] = out[-1]["ShardId"]
        return {"StreamDescription": desc}

    def get_shard_iterator(self, StreamArn, ShardId, ShardIteratorType, SequenceNumber=None):
        records = self.shards[ShardId][2]
        pos = 0
        if ShardIteratorType == "AFTER_SEQUENCE_NUMBER":
            pos = next(i + 1 for i, r in enumerate(records)
                       if r["dynamodb"]["SequenceNumber"] == SequenceNumber)  # fmt: skip
        return {"ShardIterator": f"{ShardId}:{pos}"}

    def get_records(self, ShardIterator, Limit):
        self.calls += 1
        fault = self.faults.pop(self.calls, None)
        if fault:
            raise client_error(fault)
        sid, pos = ShardIterator.rsplit(":", 1)
        parent, closed, records = self.shards[sid]
        chunk = records[int(pos) : int(pos) + self.page]
        self.order += [sid] * len(chunk)
        end = int(pos) + len(chunk)
        nxt = None if closed and end >= len(records) else f"{sid}:{end}"
        return {"Records": chunk, **({"NextShardIterator": nxt} if nxt else {})}


def read_all(api, **kwargs):
    got = []
    reader = TableStreamReader(api, "arn", ("pk",), sleep=lambda s: None, **kwargs)
    stats = reader.read(got.extend, deadline=float("inf"))
    return reader, stats, got


def test_parents_are_read_before_children_and_describe_is_paged() -> None:
    api = FakeStreams({
        "s2-child": ("s1-parent", False, [record(30, "k1", "MODIFY"), record(31, "k2")]),
        "s1-parent": (None, True, [record(10, "k1"), record(11, "k1", "MODIFY"),
                                   record(12, "k3", "REMOVE")]),
    })  # fmt: skip
    reader, stats, got = read_all(api)
    assert stats.complete and stats.shards == 2 and stats.changes == 5
    assert api.order == ["s1-parent"] * 3 + ["s2-child"] * 2
    assert [c.generation for c in got] == [0, 0, 0, 1, 1]
    assert got[2].event == "REMOVE" and got[2].new_trace is None and got[2].new_hash is None
    assert got[0].key == canonical_json({"pk": {"S": "k1"}}) and got[0].approx_ms == 1636505310500
    assert got[0].order < got[3].order  # the child's changes come after the parent's


def test_sequence_numbers_compare_as_integers() -> None:
    assert order_key(0, "9") < order_key(0, "10")
    assert order_key(0, "49000000000000000000000000000000000000") < order_key(1, "1")


def test_throttling_expired_and_trimmed_iterators_are_survived() -> None:
    records = [record(i, f"k{i}") for i in range(1, 7)]
    api = FakeStreams({"s1": (None, True, records)}, faults={
        1: "LimitExceededException", 3: "ExpiredIteratorException",
        5: "TrimmedDataAccessException"})  # fmt: skip
    slept = []
    reader = TableStreamReader(api, "arn", ("pk",), sleep=slept.append)
    got = []
    stats = reader.read(got.extend, deadline=float("inf"))
    assert stats.complete and (stats.throttles, stats.expired_iterators, stats.trimmed) == (1, 1, 1)
    assert slept  # backed off
    # after the trim the reader restarted at the horizon: changes may repeat, none is missing
    assert {c.sequence_number for c in got} == {str(i) for i in range(1, 7)}


def test_the_deadline_leaves_shards_named_and_a_later_pass_resumes() -> None:
    api = FakeStreams({"s1": (None, False, [record(1, "a"), record(2, "b")])}, page=1)
    now = [0.0]
    reader = TableStreamReader(api, "arn", ("pk",), clock=lambda: now[0], sleep=lambda s: None)
    got = []
    assert reader.read(got.extend, deadline=-1).unfinished == ["s1"]
    assert reader.read(got.extend, deadline=10).complete and len(got) == 2
    api.shards["s1"][2].append(record(3, "c"))  # written since: the next pass resumes
    reader.read(got.extend, deadline=10)
    assert [c.sequence_number for c in got] == ["1", "2", "3"]


def _rows(n: int, *, note: str = "v") -> list[tuple]:
    return [traced_item_row({"pk": {"S": str(i)}, "note": {"S": note}, "trace": {"S": f"t{i}"}},
                            ("pk",)) for i in range(n)]  # fmt: skip


def test_equal_tables_skip_per_key_work(tmp_path) -> None:
    store = TableStore(tmp_path / "v.sqlite", chunks=64)
    rows = _rows(500)
    store.add_items("a", rows[:250])
    store.add_items("a", rows[250:])
    store.add_items("b", list(reversed(rows)))  # any order, any batching
    figures = store.compare()
    assert figures["chunks_differing"] == 0 and figures["items_compared_per_key"] == 0
    assert figures["differing_keys"] == 0 and store.count("a") == store.count("b") == 500


def test_a_differing_chunk_is_found_and_only_it_is_compared(tmp_path) -> None:
    store = TableStore(tmp_path / "v.sqlite", chunks=64)
    rows = _rows(500)
    changed = _rows(1, note="other")[0]
    store.add_items("a", rows)
    store.add_items("b", [changed] + rows[1:-1])  # key 0 differs, key 499 missing
    figures = store.compare()
    assert figures["differing_keys"] == 2 and figures["chunks_differing"] <= 2
    assert figures["items_compared_per_key"] < 100  # a chunk or two, not 500 items
    keys = [json.loads(k)["pk"]["S"] for page in store.differing_keys() for k in page]
    assert sorted(keys) == ["0", "499"]
    # a settle pass: B caught up for both keys; digests updated in place
    store.replace_items("b", [rows[0][0], rows[499][0]], [rows[0], rows[499]])
    assert store.recompare([rows[0][0], rows[499][0]]) == 0
    assert store.compare()["chunks_differing"] == 0
