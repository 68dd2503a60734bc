"""The action log's wire format (xrh.action_log): what parses, and errors that name the fault."""

from __future__ import annotations

import json

import pytest

from xrh.action_log import ActionFormatError, action_partition_key, parse_action


def test_each_action_parses_to_its_item_ops() -> None:
    put = parse_action(json.dumps({"Action": "PutItem", "Data": {"pk": "7", "n": 1},
                                   "trace": "r/u1-1", "commitTimestamp": "2026-01-01T00:00:00Z"}))  # fmt: skip
    assert (
        put.ledger_op == "put" and put.trace == "r/u1-1" and put.ops[0].item == {"pk": "7", "n": 1}
    )
    upd = parse_action(
        '{"Action": "UpdateItem", "Data": {"pk": "7", "Set": {"s": "x"}, "Add": {"c": 2}}}'
    )
    assert (upd.ops[0].kind, upd.ops[0].set, upd.ops[0].add) == ("update", {"s": "x"}, {"c": 2})
    batch = parse_action(json.dumps({"Action": "BatchWrite", "Data": [
        {"PutItem": {"pk": "1"}}, {"DeleteItem": {"pk": "2"}}]}))  # fmt: skip
    assert [(o.kind, o.pk) for o in batch.ops] == [("put", "1"), ("delete", "2")]
    assert batch.ledger_op == "batch"


@pytest.mark.parametrize(
    ("data", "names"),
    [
        (b"\xff", "not JSON"),
        ('{"Action": "Scan", "Data": {}}', "'Action' must be one of"),
        ('{"Action": "PutItem", "Data": {"n": 1}}', "PutItem Data: 'pk'"),
        ('{"Action": "UpdateItem", "Data": {"pk": "1", "Add": {"c": "2"}}}', "'Add' of 'c'"),
        ('{"Action": "UpdateItem", "Data": {"pk": "1"}}', "needs 'Set' or 'Add'"),
        ('{"Action": "DeleteItem", "Data": {"pk": "1", "x": 1}}', "names the key only"),
        (
            '{"Action": "BatchWrite", "Data": [{"PutItem": {"pk": "1"}}, {"PutItem": {"pk": "1"}}]}',
            "appears twice",
        ),
        ('{"Action": "BatchWrite", "Data": [{"UpdateItem": {"pk": "1"}}]}', "Data[0]"),
        ('{"Action": "BatchWrite", "Data": []}', "1..25"),
    ],
)
def test_a_malformed_action_is_refused_with_what_is_wrong(data, names) -> None:
    with pytest.raises(ActionFormatError, match=names.replace("[", r"\[").replace("(", r"\(")):
        parse_action(data)


def test_keys_of_one_block_share_a_partition_key() -> None:
    assert action_partition_key(0) == action_partition_key(24) == "g0"
    assert action_partition_key(25) == "g1"
