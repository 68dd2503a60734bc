"""`xrh verify --table` against the embedded endpoint (two moto servers over HTTP): two small
tables that differ are invalid with the differences named; a missing table is a usage error."""

from __future__ import annotations

import json

import pytest

from verify import cli
from xrh.aws import AwsClients
from xrh.config import Side
from xrh.errors import UsageError

pytestmark = pytest.mark.functional


def parse(argv):
    return cli.build_parser().parse_args(argv)


def _table(client, name: str, stream: bool) -> None:
    kwargs = (
        {"StreamSpecification": {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}}
        if stream
        else {}
    )
    client.create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}], **kwargs,
    )  # fmt: skip


def test_verify_table_finds_the_differences_of_two_tables(provisioned, capsys):
    config = provisioned
    clients = AwsClients(config)
    a, b = clients.client("dynamodb", Side.A), clients.client("dynamodb", Side.B)
    name = f"{config.prefix}-orders"
    _table(a, name, stream=True)
    _table(b, name, stream=False)

    def item(i: int, note: str) -> dict:
        return {"id": {"S": f"o{i}"}, "note": {"S": note}, "n": {"N": str(i)}}

    for i in range(40):
        a.put_item(TableName=name, Item=item(i, "v1"))
        b.put_item(TableName=name, Item=item(i, "v1"))
    a.put_item(TableName=name, Item=item(3, "v2"))  # B kept v1: stale
    a.delete_item(TableName=name, Key={"id": {"S": "o5"}})  # B kept it: stale
    b.delete_item(TableName=name, Key={"id": {"S": "o7"}})  # lost
    b.put_item(TableName=name, Item=item(99, "v1"))  # phantom
    urls = ["--endpoint-url-a", config.endpoint_url_a, "--endpoint-url-b", config.endpoint_url_b]
    argv = [
        "--table",
        name,
        "--no-progress",
        "--runs-dir",
        str(config.runs_dir),
        "--settle-seconds",
        "1",
        *urls,
    ]  # the planted differences are final
    assert cli.run(parse(argv)) == 1
    report = json.loads((config.runs_dir / "latest" / "report.json").read_text())
    counts = {k: a["count"] for k, a in report["anomalies"].items() if a["count"]}
    assert counts == {"stale": 2, "lost": 1, "phantom": 1}
    stale = {e["key"]["id"]: e["reason"] for e in report["anomalies"]["stale"]["examples"]}
    assert stale == {"o3": "older_version", "o5": "deleted_in_source"}
    assert report["anomalies"]["lost"]["examples"][0]["source_value"]["note"] == {"S": "v1"}
    assert report["details"]["settle"]["waited_s"] >= 1
    assert "verdict: invalid" in capsys.readouterr().out
    assert "Table comparison" in (config.runs_dir / "latest" / "report.html").read_text()

    with pytest.raises(UsageError, match=f"--table-b {name}-nope: no such table in region B"):
        cli.run(parse(["--table", name, "--table-b", f"{name}-nope", *urls]))
