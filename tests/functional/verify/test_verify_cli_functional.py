"""`xrh verify` on the embedded endpoint: re-verify a run directory, and streams alone."""

from __future__ import annotations

import json

import pytest
from verify_sabotage import produce, read_source, send

from verify import cli
from xrh.aws import AwsClients
from xrh.config import Side
from xrh.resources import ResourceNames
from xrh.runs import create_run

pytestmark = pytest.mark.functional


def parse(argv):
    return cli.build_parser().parse_args(argv)


def test_reverify_run_dir_and_compare_streams_alone(provisioned, capsys):
    config = provisioned
    run = create_run(config.runs_dir, config.to_public_dict()).path
    clients = AwsClients(config)
    produce(clients, config, run, 60, 7)
    send(clients, config, read_source(clients, config))
    urls = ["--endpoint-url-a", config.endpoint_url_a, "--endpoint-url-b", config.endpoint_url_b]

    assert cli.run(parse(["--run-dir", str(run), "--no-progress", *urls])) == 0
    report = json.loads((run / "report.json").read_text())
    assert report["verdict"] == "valid" and report["counts"]["acknowledged"] == 60
    assert "verdict: valid" in capsys.readouterr().out

    # config.json of this run records the URLs too: re-verifying needs no flags
    assert cli.run(parse(["--run-dir", str(run), "--no-progress"])) == 0

    # a record in the source that was never copied: streams alone (no ledger) find it lost
    stream = ResourceNames(config.prefix).stream
    clients.client("kinesis", Side.A).put_record(
        StreamName=stream, PartitionKey="other", Data=b"written by someone else"
    )
    argv = [
        "--stream",
        stream,
        "--no-progress",
        "--runs-dir",
        str(config.runs_dir),
        "--settle-seconds",
        "2",
        *urls,
    ]  # the planted loss is final: no long wait
    assert cli.run(parse(argv)) == 1
    latest = json.loads((config.runs_dir / "latest" / "report.json").read_text())
    assert latest["run_id"] != report["run_id"]
    assert latest["counts"]["acknowledged"] == 0 and latest["counts"]["source_records"] == 61
    (lost,) = latest["anomalies"]["lost"]["examples"]
    assert lost["partition_key"] == "other" and "trace" not in lost
