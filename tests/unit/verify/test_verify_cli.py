"""The verify command line: usage errors (exit 3), endpoint resolution, endpoint gone (exit 2)."""

from __future__ import annotations

import json
import socket

import pytest

from verify import cli
from verify.__main__ import main
from xrh.config import HarnessConfig
from xrh.errors import UsageError
from xrh.runs import RunDir


def parse(argv):
    return cli.build_parser().parse_args(argv)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_run(tmp_path, **config):
    run = tmp_path / "20260101T000000Z-abcdef"
    run.mkdir()
    RunDir(run).write_json("config.json", HarnessConfig(**config).to_public_dict())
    return run


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "--run-dir DIR"),
        (["--stream", "s", "--runs-dir", "/nonexistent/runs"], "no embedded endpoint"),
        (["--stream", "s", "--endpoint", "aws", "--timeout", "0"], "--timeout"),
        (["--stream", "s", "--endpoint", "aws", "--tolerance-ms", "-1"], "--tolerance-ms"),
        (["--run-dir", "/nonexistent/run"], "no such run directory"),
    ],
)
def test_usage_errors_name_the_flag(argv, message):
    with pytest.raises(UsageError, match=message):
        cli.run(parse(argv))


def test_python_m_verify_prints_one_line_and_exits_3(capsys):
    assert main(["--stream", "s", "--runs-dir", "/nonexistent/runs"]) == 3
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


def test_bad_config_json_is_a_usage_error(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    (run / "config.json").write_text("{not json")
    with pytest.raises(UsageError, match="config.json"):
        cli.run(parse(["--run-dir", str(run)]))


@pytest.mark.parametrize(
    "payload",
    [
        {"endpoint_url_a": "http://127.0.0.1:1", "endpoint_url_b": "http://127.0.0.1:2"},
        {"a": {"url": "http://127.0.0.1:1", "pid": 5}, "b": {"url": "http://127.0.0.1:2"}},
        {"regions": {"us-east-1": "http://127.0.0.1:1", "us-east-2": "http://127.0.0.1:2"}},
    ],
)
def test_endpoints_file_shapes(payload):
    urls = cli.urls_from_endpoints(payload, HarnessConfig())
    assert urls == ("http://127.0.0.1:1", "http://127.0.0.1:2")


def test_run_without_endpoint_is_unknown_exit_2(tmp_path, capsys):
    run = make_run(tmp_path)
    assert cli.run(parse(["--run-dir", str(run), "--no-progress"])) == 2
    report = json.loads((run / "report.json").read_text())
    assert report["verdict"] == "unknown"
    assert "not reachable" in report["reasons"][0]
    assert "verdict: unknown" in capsys.readouterr().out


def test_run_whose_endpoint_is_gone_is_unknown_exit_2(tmp_path):
    dead_a, dead_b = (f"http://127.0.0.1:{free_port()}" for _ in range(2))
    run = make_run(tmp_path, endpoint_url_a=dead_a, endpoint_url_b=dead_b)
    code = cli.run(parse(["--run-dir", str(run), "--no-progress", "--timeout", "20"]))
    assert code == 2
    report = json.loads((run / "report.json").read_text())
    assert "not reachable" in report["reasons"][0] and dead_a in report["reasons"][0]
