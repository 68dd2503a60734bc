"""Configuration: flags over environment over defaults; every mistake is one UsageError line."""

from __future__ import annotations

from pathlib import Path

import pytest

from xrh.config import EndpointMode, Side, parse_config
from xrh.errors import EXIT_USAGE, UsageError


def test_defaults_are_embedded_two_regions() -> None:
    config = parse_config([], environ={})
    assert (config.region_a, config.region_b) == ("us-east-1", "us-east-2")
    assert config.endpoint_mode is EndpointMode.EMBEDDED
    assert config.endpoint_url_a is None and config.prefix == "xrh" and config.shards == 4
    assert config.runs_dir == Path("runs")


@pytest.mark.parametrize(
    ("argv", "mode", "url_a", "url_b"),
    [
        (
            ["--endpoint-url", "http://localhost:4566/"],
            EndpointMode.URL,
            "http://localhost:4566",
            "http://localhost:4566",
        ),
        (
            [
                "--endpoint-url-a",
                "http://127.0.0.1:5001",
                "--endpoint-url-b",
                "https://127.0.0.1:5002",
            ],
            EndpointMode.PER_REGION,
            "http://127.0.0.1:5001",
            "https://127.0.0.1:5002",
        ),
        (["--endpoint", "aws"], EndpointMode.AWS, None, None),
        (["--endpoint", "embedded"], EndpointMode.EMBEDDED, None, None),
    ],
)
def test_endpoint_modes(
    argv: list[str], mode: EndpointMode, url_a: str | None, url_b: str | None
) -> None:
    config = parse_config(argv, environ={})
    assert (config.endpoint_mode, config.endpoint_url_a, config.endpoint_url_b) == (
        mode,
        url_a,
        url_b,
    )


def test_environment_fills_in_and_flags_win() -> None:
    environ = {"XRH_REGION_A": "eu-west-1", "XRH_REGION_B": "eu-central-1", "XRH_SHARDS": "2"}
    config = parse_config(["--shards", "8"], environ=environ)
    assert (config.region_a, config.region_b, config.shards) == ("eu-west-1", "eu-central-1", 8)
    assert config.region(Side.A) == "eu-west-1" and config.side_of("eu-central-1") is Side.B


@pytest.mark.parametrize(
    ("argv", "environ", "fragment"),
    [
        (["--region-a", "mars-1"], {}, "--region-a: unknown AWS region 'mars-1'"),
        ([], {"XRH_REGION_B": "us-east-9"}, "XRH_REGION_B: unknown AWS region"),
        (["--region-a", "us-east-2"], {}, "both 'us-east-2'"),
        (["--endpoint-url", "ftp://host"], {}, "not an http(s) URL"),
        (["--endpoint-url", "http://"], {}, "has no host"),
        (["--endpoint-url", "http://h:99999"], {}, "invalid port"),
        (["--endpoint-url-a", "http://h:1"], {}, "--endpoint-url-b is missing"),
        (["--endpoint-url-b", "http://h:1"], {}, "--endpoint-url-a is missing"),
        (
            [
                "--endpoint-url",
                "http://h:1",
                "--endpoint-url-a",
                "http://h:2",
                "--endpoint-url-b",
                "http://h:3",
            ],
            {},
            "conflicts",
        ),
        (
            ["--endpoint", "aws", "--endpoint-url", "http://h:1"],
            {},
            "conflicts with an endpoint URL",
        ),
        (["--endpoint", "cloud"], {}, "is not 'embedded' or 'aws'"),
        (["--prefix", "Bad_Prefix"], {}, "--prefix: 'Bad_Prefix'"),
        (["--shards", "zero"], {}, "not a whole number"),
        (["--shards", "0"], {}, "outside 1..64"),
        (["--pipeline", "kafka"], {}, "unknown pipeline 'kafka'"),
    ],
)
def test_mistakes_name_the_option_and_value(
    argv: list[str], environ: dict[str, str], fragment: str
) -> None:
    with pytest.raises(UsageError) as raised:
        parse_config(argv, environ=environ)
    assert fragment in str(raised.value)
    assert "\n" not in str(raised.value)
    assert raised.value.exit_code == EXIT_USAGE


def test_public_dict_has_no_credentials_and_is_json_ready() -> None:
    import json

    config = parse_config(
        ["--endpoint-url", "http://127.0.0.1:4566"], environ={"AWS_SECRET_ACCESS_KEY": "s3cr3t"}
    )
    text = json.dumps(config.to_public_dict())
    assert "s3cr3t" not in text and '"endpoint_mode": "url"' in text
