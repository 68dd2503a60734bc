"""Provisioning through the library and the xrh command, and the command's exit codes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from xrh.aws import AwsClients
from xrh.config import HarnessConfig, Side
from xrh.endpoint import EmbeddedEndpoint, answers
from xrh.provision import Action, destroy, plan, provision


def test_provisioned_pipeline_exists_in_each_region_and_reruns_change_nothing(
    provisioned: HarnessConfig,
) -> None:
    clients = AwsClients(provisioned)
    for side in Side:
        kinesis = clients.client("kinesis", side)
        summary = kinesis.describe_stream_summary(StreamName=f"{provisioned.prefix}-stream")
        assert summary["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE"
        assert summary["StreamDescriptionSummary"]["OpenShardCount"] == provisioned.shards
        active = clients.client("dynamodb", side).get_item(
            TableName=f"{provisioned.prefix}-active-region",
            Key={"streamName": {"S": f"{provisioned.prefix}-stream"}},
        )["Item"]
        assert active["activeRegion"]["S"] == provisioned.region_a
    assert {s.action for s in plan(provisioned, clients)} == {Action.KEEP}
    assert provision(provisioned, clients) == []


def test_destroy_removes_everything_once(
    endpoint: EmbeddedEndpoint, provisioned: HarnessConfig
) -> None:
    clients = AwsClients(provisioned)
    clients.client("s3", Side.B).put_object(
        Bucket=f"{provisioned.prefix}-dead-letter-{provisioned.region_b}", Key="x.json", Body=b"{}"
    )
    removed = destroy(provisioned, clients)
    assert len(removed) == 10
    assert {s.action for s in plan(provisioned, clients, destroy=True)} == {Action.ABSENT}


def _xrh(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "xrh", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["provision", "--region-a", "nowhere-1"], "unknown AWS region 'nowhere-1'"),
        (
            ["provision", "--endpoint-url-a", "localhost:4566", "--endpoint-url-b", "http://h:1"],
            "not an http(s) URL",
        ),
        (["provision", "--endpoint-url-a", "http://h:1"], "--endpoint-url-b is missing"),
        (["provision", "--no-such-flag"], "unrecognized arguments"),
        (["provision", "--shards", "-2"], "outside 1..64"),
        (["provision"], "no embedded endpoint is running"),
    ],
)
def test_bad_usage_exits_3_with_one_line_and_no_traceback(
    tmp_path: Path, args: list[str], fragment: str
) -> None:
    result = _xrh(*args, cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    assert fragment in result.stderr
    assert "Traceback" not in result.stderr


def test_xrh_endpoint_then_provision_in_another_process(tmp_path: Path) -> None:
    server = subprocess.Popen(
        [sys.executable, "-m", "xrh", "endpoint", "--runs-dir", str(tmp_path / "runs")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        urls: dict[str, str] = {}
        deadline = time.monotonic() + 60
        while len(urls) < 2 and time.monotonic() < deadline:
            line = server.stdout.readline() if server.stdout else ""
            if line.startswith("region "):
                urls[line.split()[1]] = line.split()[-1]
        assert set(urls) == {"A", "B"}
        flags = ["--endpoint-url-a", urls["A"], "--endpoint-url-b", urls["B"], "--prefix", "cli"]
        first = _xrh("provision", "--pipeline", "kinesis", *flags, cwd=tmp_path)
        assert first.returncode == 0 and first.stdout.count("created") == 10, first.stderr
        again = _xrh("provision", "--pipeline", "kinesis", *flags, cwd=tmp_path)
        assert again.returncode == 0 and "nothing to do" in again.stdout
        # Without flags, the running endpoint is found through runs/endpoints.json.
        found = _xrh(
            "provision", "--prefix", "cli", "--runs-dir", str(tmp_path / "runs"), cwd=tmp_path
        )
        assert found.returncode == 0 and "nothing to do" in found.stdout, found.stderr
        gone = _xrh("provision", "--destroy", *flags, cwd=tmp_path)
        assert gone.returncode == 0 and gone.stdout.count("deleted") == 10
    finally:
        server.send_signal(signal.SIGTERM)
        out, _ = server.communicate(timeout=30)
    assert server.returncode == 0 and "stopped both regions" in out
    assert not any(answers(url) for url in urls.values())
    leftovers = subprocess.run(
        ["pgrep", "-f", f"xrh.endpoint.server.*--parent-pid {server.pid}"], capture_output=True
    )
    assert leftovers.stdout == b"", "a region server outlived xrh endpoint"
    assert os.path.exists(tmp_path / "runs" / "latest" / "config.json")


def test_failover_command_writes_a_handover_in_both_regions(
    provisioned: HarnessConfig, tmp_path: Path
) -> None:
    flags = [
        "--endpoint-url-a",
        provisioned.endpoint_url_a or "",
        "--endpoint-url-b",
        provisioned.endpoint_url_b or "",
    ]
    flags += ["--prefix", provisioned.prefix]
    before = int(time.time() * 1000)
    result = _xrh("failover", "--to", "b", *flags, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    clients = AwsClients(provisioned)
    for side in Side:
        item = clients.client("dynamodb", side).get_item(
            TableName=f"{provisioned.prefix}-active-region",
            Key={"streamName": {"S": f"{provisioned.prefix}-stream"}},
        )["Item"]
        assert item["activeRegion"]["S"] == provisioned.region_b
        assert item["previousRegion"]["S"] == provisioned.region_a
        assert int(item["activeSinceMs"]["N"]) >= before
    again = _xrh("failover", "--to", "b", *flags, cwd=tmp_path)
    assert again.returncode == 0 and "nothing to do" in again.stdout
    first_since = item["activeSinceMs"]["N"]
    back = _xrh("failover", "--to", "a", "--force", *flags, cwd=tmp_path)
    assert back.returncode == 0, back.stderr
    for side in Side:  # the first switch is remembered: B may still work off what it held
        item = clients.client("dynamodb", side).get_item(
            TableName=f"{provisioned.prefix}-active-region",
            Key={"streamName": {"S": f"{provisioned.prefix}-stream"}},
        )["Item"]
        assert item["activeRegion"]["S"] == provisioned.region_a
        assert item["switchHistory"]["L"] == [{"M": {
            "sinceMs": {"N": first_since}, "region": {"S": provisioned.region_b},
            "previousRegion": {"S": provisioned.region_a},
        }}]  # fmt: skip
    bad = _xrh("failover", "--to", "c", *flags, cwd=tmp_path)
    assert bad.returncode == 3 and "invalid choice" in bad.stderr
