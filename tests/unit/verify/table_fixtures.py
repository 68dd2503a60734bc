"""Two regions of DynamoDB in this process (moto.mock_aws) for the table verify tests, and a
tiny replicator to plant faults with: ``copy`` puts A's item into B as it is now."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import boto3

from xrh.config import HarnessConfig, Side
from xrh.contracts import LEDGER_DDL

RUN_ID = "20240101T000000Z-abcdef"
TABLE = "xrh-items"


class Clients:
    """What verify asks for (``client(service, side)``), backed by moto's regions."""

    def __init__(self, config: HarnessConfig) -> None:
        self.config = config
        self._clients: dict[tuple[str, Side], Any] = {}

    def client(self, service: str, side: Side) -> Any:
        key = (service, side)
        if key not in self._clients:
            region = self.config.region(side)
            extra = {}
            if service == "dynamodbstreams":  # botocore picks an account-based host moto lacks
                extra["endpoint_url"] = f"https://streams.dynamodb.{region}.amazonaws.com"
            self._clients[key] = boto3.client(
                service, region_name=region, aws_access_key_id="testing",
                aws_secret_access_key="testing", **extra,
            )  # fmt: skip
        return self._clients[key]


def create_table(
    ddb: Any, name: str = TABLE, *, stream: bool = True, range_key: str | None = None,
    hash_key: str = "pk",
) -> None:  # fmt: skip
    schema = [{"AttributeName": hash_key, "KeyType": "HASH"}]
    attrs = [{"AttributeName": hash_key, "AttributeType": "S"}]
    if range_key:
        schema.append({"AttributeName": range_key, "KeyType": "RANGE"})
        attrs.append({"AttributeName": range_key, "AttributeType": "N"})
    kwargs: dict[str, Any] = {}
    if stream:
        kwargs["StreamSpecification"] = {
            "StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}  # fmt: skip
    ddb.create_table(TableName=name, KeySchema=schema, AttributeDefinitions=attrs,
                     BillingMode="PAY_PER_REQUEST", **kwargs)  # fmt: skip


class Pipeline:
    """Region A's table (stream on), B's table, a ledger, and writes that record themselves."""

    def __init__(self, config: HarnessConfig, run_dir: Path) -> None:
        self.config = config
        self.clients = Clients(config)
        self.a = self.clients.client("dynamodb", Side.A)
        self.b = self.clients.client("dynamodb", Side.B)
        create_table(self.a)
        create_table(self.b, stream=False)
        self.run_dir = run_dir
        self.ledger = sqlite3.connect(run_dir / "ledger.sqlite")
        self.ledger.executescript(LEDGER_DDL)
        self.seq = 0

    def item(self, pk: str, trace: str, **extra: Any) -> dict[str, Any]:
        item = {"pk": {"S": pk}, "trace": {"S": trace},
                "commitTimestamp": {"S": "2021-11-10T00:48:30.123Z"}, "key": {"N": pk}}  # fmt: skip
        for name, value in extra.items():
            item[name] = {"S": str(value)}
        return item

    def trace(self) -> str:
        self.seq += 1
        return f"{RUN_ID}/w0u1-{self.seq:09d}"

    def put(self, pk: str, *, status: str = "ok", write: bool = True, **extra: Any) -> str:
        """A put to A, ledgered with ``status`` (``write=False``: ledgered, never written)."""
        trace = self.trace()
        if write:
            self.a.put_item(TableName=TABLE, Item=self.item(pk, trace, **extra))
        self._ledger(trace, pk, "put", status)
        return trace

    def delete(self, pk: str, *, status: str = "ok") -> str:
        trace = self.trace()
        self.a.delete_item(TableName=TABLE, Key={"pk": {"S": pk}})
        self._ledger(trace, pk, "delete", status)
        return trace

    def _ledger(self, trace: str, pk: str, op: str, status: str) -> None:
        self.ledger.execute(
            "INSERT INTO ledger (trace, producer, seq, pipeline, region, target, partition_key,"
            " key, commit_ts, op, status, invoked_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (trace, f"{RUN_ID}/w0u1", self.seq, "dynamodb", self.config.region_a, TABLE, pk,
             pk, 1636505310123, op, status, 0),
        )  # fmt: skip
        self.ledger.commit()

    def complete_ledger(self) -> None:
        self.ledger.execute("INSERT OR REPLACE INTO ledger_meta VALUES ('complete', '1')")
        self.ledger.commit()
        self.ledger.close()

    def copy(self, pk: str) -> None:
        """B gets A's item as it is now (or loses the key if A has none)."""
        found = self.a.get_item(TableName=TABLE, Key={"pk": {"S": pk}}).get("Item")
        if found:
            self.b.put_item(TableName=TABLE, Item=found)
        else:
            self.b.delete_item(TableName=TABLE, Key={"pk": {"S": pk}})

    def copy_all(self) -> None:
        for page in self.a.get_paginator("scan").paginate(TableName=TABLE):
            for item in page["Items"]:
                self.b.put_item(TableName=TABLE, Item=item)


def write_config(run_dir: Path, config: HarnessConfig) -> None:
    (run_dir / "config.json").write_text(json.dumps(config.to_public_dict()))
