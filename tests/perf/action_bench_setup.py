"""What the action-log benchmarks set up alike: a log of actions drawn by the load generator's
:class:`~loadgen.actions.ActionRecords` (default template, default mix put=40, update=40,
delete=10, batch=10, uniform keyspace), put to ``{prefix}-actions`` in region A of a freshly
provisioned ``action-log`` pipeline; the table that log folds to (this module's own model of the
format, sharing nothing with the consumer); and a table's contents read back for comparison."""

from __future__ import annotations

import json
import random
import time
from typing import Any

from replicator_bench_setup import provisioned

from loadgen.actions import ActionRecords, parse_action_ops
from loadgen.keyspace import KeyspaceSpec
from loadgen.templates import DEFAULT_TEMPLATE, compile_template
from xrh.aws import AwsClients
from xrh.config import HarnessConfig, Side
from xrh.endpoint import EmbeddedEndpoint
from xrh.resources import ResourceNames

PUT_RECORDS_LIMIT = 500


def action_log(n: int, keys: int, seed: int = 7) -> list[tuple[str, bytes]]:
    """``n`` actions as (partition key, data), seeded: the same log each time."""
    rng = random.Random(seed)
    renderer = compile_template(DEFAULT_TEMPLATE).bind(rng=rng, producer="bench")
    records = ActionRecords(renderer, KeyspaceSpec(size=keys).build(rng), rng,
                            parse_action_ops(None))  # fmt: skip
    now = int(time.time() * 1000)
    out = []
    for i in range(n):
        entry = records(i, f"bench-{i}", now + i // 50)
        out.append((entry.partition_key, entry.data))
    return out


def loaded(endpoint: EmbeddedEndpoint, tag: str, log: list[tuple[str, bytes]]):
    """A provisioned action-log pipeline whose actions stream in A holds ``log`` in order
    (one PutRecords after another: per partition key, hence per item key, the log's order)."""
    config = provisioned(endpoint, tag, "action-log")
    clients = AwsClients(config, max_attempts=1, max_pool_connections=8)
    ka = clients.client("kinesis", Side.A)
    stream = ResourceNames(config.prefix).actions_stream
    for start in range(0, len(log), PUT_RECORDS_LIMIT):
        chunk = log[start : start + PUT_RECORDS_LIMIT]
        answer = ka.put_records(
            StreamName=stream, Records=[{"PartitionKey": pk, "Data": data} for pk, data in chunk]
        )
        assert answer["FailedRecordCount"] == 0, answer
    return config, clients


def fold(log: list[tuple[str, bytes]]) -> dict[str, dict]:
    """The table the log leaves, in plain JSON values (puts replace, updates SET and ADD, an ADD
    to an absent attribute starting at 0, deletes remove, a batch is its requests in order)."""
    table: dict[str, dict] = {}
    for _, data in log:
        doc = json.loads(data)
        kind, body = doc["Action"], doc["Data"]
        requests = body if kind == "BatchWrite" else [{kind: body}]
        for request in requests:
            ((op, value),) = request.items()
            if op == "PutItem":
                table[value["pk"]] = dict(value)
            elif op == "DeleteItem":
                table.pop(value["pk"], None)
            else:
                item = table.setdefault(value["pk"], {"pk": value["pk"]})
                item.update(value.get("Set") or {})
                for name, amount in (value.get("Add") or {}).items():
                    item[name] = item.get(name, 0) + amount
    return table


def _plain(value: dict[str, Any]) -> Any:
    ((kind, x),) = value.items()
    if kind == "N":
        return int(x) if x.lstrip("-").isdigit() else float(x)
    if kind == "L":
        return [_plain(v) for v in x]
    if kind == "M":
        return {k: _plain(v) for k, v in x.items()}
    if kind == "NULL":
        return None
    return x


def table_contents(config: HarnessConfig, clients: AwsClients, side: Side) -> dict[str, dict]:
    """``{prefix}-items`` in ``side``, in plain JSON values, bookkeeping attributes left out."""
    ddb = clients.client("dynamodb", side)
    table = ResourceNames(config.prefix).items_table
    out: dict[str, dict] = {}
    kwargs: dict[str, Any] = {"TableName": table}
    while True:
        page = ddb.scan(**kwargs)
        for item in page["Items"]:
            out[item["pk"]["S"]] = {
                k: _plain(v) for k, v in item.items() if not k.startswith("xrh_")
            }
        if "LastEvaluatedKey" not in page:
            return out
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def to_wire(value: Any) -> dict[str, Any]:
    """A plain JSON value as a DynamoDB attribute value (the bare loop's own conversion)."""
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | float):
        return {"N": repr(value)}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, list):
        return {"L": [to_wire(v) for v in value]}
    return {"M": {k: to_wire(v) for k, v in value.items()}}
