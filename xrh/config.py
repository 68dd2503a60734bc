"""One frozen configuration for the harness, built from flags and environment in one place.

Every command (``xrh endpoint``, ``provision``, ``replicate``, ``verify``) and the locustfile
register the same options through :func:`add_common_options` and turn them into a
:class:`HarnessConfig` with :func:`config_from_options`. Flags win over environment variables
(``XRH_*``), which win over defaults. Anything wrong raises :class:`~xrh.errors.UsageError`
with one line naming the option and the value.

Endpoint modes (DESIGN.md, "Endpoints"):

- ``embedded`` (no flags): one moto server per region on 127.0.0.1, started by the harness or
  found in the endpoints file that a running ``xrh endpoint`` wrote;
- ``url``: ``--endpoint-url URL`` serves every region (LocalStack, a single moto server);
- ``per-region``: ``--endpoint-url-a`` and ``--endpoint-url-b``;
- ``aws``: ``--endpoint aws``, real AWS with the standard credential chain.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from xrh.errors import UsageError

PIPELINES = ("kinesis", "dynamodb", "active-active", "action-log", "postgres-cdc")
DEFAULT_REGION_A = "us-east-1"
DEFAULT_REGION_B = "us-east-2"
DEFAULT_PREFIX = "xrh"
DEFAULT_SHARDS = 4
DEFAULT_RUNS_DIR = "runs"
MAX_SHARDS = 64

_PREFIX_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$")


class EndpointMode(enum.Enum):
    EMBEDDED = "embedded"
    URL = "url"
    PER_REGION = "per-region"
    AWS = "aws"


class Side(enum.Enum):
    """Which of the two regions: A is the source while it is active, B the target."""

    A = "a"
    B = "b"

    @property
    def other(self) -> Side:
        return Side.B if self is Side.A else Side.A


@dataclass(frozen=True, slots=True)
class HarnessConfig:
    """Resolved options shared by every component. ``endpoint_url_*`` are ``None`` on AWS and,
    in embedded mode, until the embedded endpoint is started or found."""

    pipeline: str = "kinesis"
    region_a: str = DEFAULT_REGION_A
    region_b: str = DEFAULT_REGION_B
    endpoint_mode: EndpointMode = EndpointMode.EMBEDDED
    endpoint_url_a: str | None = None
    endpoint_url_b: str | None = None
    prefix: str = DEFAULT_PREFIX
    shards: int = DEFAULT_SHARDS
    runs_dir: Path = field(default_factory=lambda: Path(DEFAULT_RUNS_DIR))

    def region(self, side: Side) -> str:
        return self.region_a if side is Side.A else self.region_b

    def endpoint_url(self, side: Side) -> str | None:
        return self.endpoint_url_a if side is Side.A else self.endpoint_url_b

    def side_of(self, region: str) -> Side:
        if region == self.region_a:
            return Side.A
        if region == self.region_b:
            return Side.B
        raise UsageError(
            f"region {region!r} is neither region A ({self.region_a}) nor B ({self.region_b})"
        )

    def with_endpoints(self, url_a: str, url_b: str) -> HarnessConfig:
        """The same configuration pointed at resolved endpoint URLs (embedded mode)."""
        return dataclasses.replace(self, endpoint_url_a=url_a, endpoint_url_b=url_b)

    @property
    def is_local(self) -> bool:
        """True when no request can reach real AWS (embedded, or URLs on this machine)."""
        return self.endpoint_mode is not EndpointMode.AWS

    def to_public_dict(self) -> dict[str, Any]:
        """What ``config.json`` holds: every option, never a credential."""
        out = dataclasses.asdict(self)
        out["endpoint_mode"] = self.endpoint_mode.value
        out["runs_dir"] = str(self.runs_dir)
        return out


# --------------------------------------------------------------------------- validation


def known_regions() -> frozenset[str]:
    """Every region botocore knows in any partition (aws, aws-cn, aws-us-gov, ...)."""
    import botocore.session  # local import: nothing happens at import time

    session = botocore.session.get_session()
    regions: set[str] = set()
    for partition in session.get_available_partitions():
        regions.update(session.get_available_regions("kinesis", partition_name=partition))
        regions.update(session.get_available_regions("dynamodb", partition_name=partition))
    return frozenset(regions)


def validate_region(value: str, option: str) -> str:
    region = value.strip()
    if region not in known_regions():
        raise UsageError(
            f"{option}: unknown AWS region {value!r} (for example us-east-1, eu-west-1)"
        )
    return region


def validate_url(value: str, option: str) -> str:
    url = value.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise UsageError(
            f"{option}: {value!r} is not an http(s) URL (for example http://127.0.0.1:4566)"
        )
    try:
        port = parts.port
    except ValueError:
        raise UsageError(f"{option}: {value!r} has an invalid port") from None
    if not parts.hostname:
        raise UsageError(f"{option}: {value!r} has no host")
    if port == 0:
        raise UsageError(f"{option}: {value!r} has port 0")
    if parts.query or parts.fragment:
        raise UsageError(f"{option}: {value!r} must not carry a query or fragment")
    return url.rstrip("/")


def validate_prefix(value: str, option: str = "--prefix") -> str:
    if not _PREFIX_RE.match(value):
        raise UsageError(
            f"{option}: {value!r} must be 2-32 characters of lowercase letters, digits and '-', "
            "starting with a letter (it names streams, tables and S3 buckets)"
        )
    return value


def validate_shards(value: Any, option: str = "--shards") -> int:
    try:
        shards = int(value)
    except (TypeError, ValueError):
        raise UsageError(f"{option}: {value!r} is not a whole number") from None
    if not 1 <= shards <= MAX_SHARDS:
        raise UsageError(f"{option}: {shards} is outside 1..{MAX_SHARDS}")
    return shards


# --------------------------------------------------------------------------- options

# (dest, flag, environment variable, help). Defaults are applied in config_from_options so
# that "given on the command line" and "left alone" stay distinguishable.
_OPTIONS: tuple[tuple[str, str, str, str], ...] = (
    (
        "pipeline",
        "--pipeline",
        "XRH_PIPELINE",
        f"pipeline: {', '.join(PIPELINES)} (default kinesis)",
    ),
    (
        "region_a",
        "--region-a",
        "XRH_REGION_A",
        f"region A, the active source (default {DEFAULT_REGION_A})",
    ),
    (
        "region_b",
        "--region-b",
        "XRH_REGION_B",
        f"region B, the replica (default {DEFAULT_REGION_B})",
    ),
    (
        "endpoint",
        "--endpoint",
        "XRH_ENDPOINT",
        "'embedded' (default: moto on 127.0.0.1) or 'aws' (real AWS)",
    ),
    (
        "endpoint_url",
        "--endpoint-url",
        "XRH_ENDPOINT_URL",
        "one endpoint URL for both regions (LocalStack)",
    ),
    ("endpoint_url_a", "--endpoint-url-a", "XRH_ENDPOINT_URL_A", "endpoint URL for region A"),
    ("endpoint_url_b", "--endpoint-url-b", "XRH_ENDPOINT_URL_B", "endpoint URL for region B"),
    ("prefix", "--prefix", "XRH_PREFIX", f"resource-name prefix (default {DEFAULT_PREFIX})"),
    ("shards", "--shards", "XRH_SHARDS", f"shards per stream (default {DEFAULT_SHARDS})"),
    (
        "runs_dir",
        "--runs-dir",
        "XRH_RUNS_DIR",
        f"folder of run directories (default {DEFAULT_RUNS_DIR})",
    ),
)


def add_common_options(parser: Any, *, web_ui: bool = False) -> None:
    """Register the shared options on an argparse parser or Locust's parser.

    ``web_ui=True`` passes ``include_in_web_ui`` so Locust shows them in its start form.
    """
    for dest, flag, env, help_text in _OPTIONS:
        kwargs: dict[str, Any] = {"dest": dest, "default": None, "help": f"{help_text} [env {env}]"}
        if web_ui:
            kwargs["include_in_web_ui"] = True
            kwargs["default"] = ""
        parser.add_argument(flag, **kwargs)


def _pick(options: Any, environ: Mapping[str, str], dest: str, env: str) -> tuple[str | None, str]:
    """The value of one option and the name to blame for it in an error message."""
    value = getattr(options, dest, None)
    flag = next(f for d, f, _, _ in _OPTIONS if d == dest)
    if value not in (None, ""):
        return str(value), flag
    env_value = environ.get(env)
    if env_value not in (None, ""):
        return env_value, env
    return None, flag


def config_from_options(options: Any, environ: Mapping[str, str] | None = None) -> HarnessConfig:
    """Resolve flags (an argparse namespace or Locust's parsed options) and environment."""
    environ = os.environ if environ is None else environ
    got = {dest: _pick(options, environ, dest, env) for dest, _, env, _ in _OPTIONS}

    pipeline, where = got["pipeline"]
    pipeline = pipeline or "kinesis"
    if pipeline not in PIPELINES:
        raise UsageError(
            f"{where}: unknown pipeline {pipeline!r}; choose one of {', '.join(PIPELINES)}"
        )

    region_a = validate_region(got["region_a"][0] or DEFAULT_REGION_A, got["region_a"][1])
    region_b = validate_region(got["region_b"][0] or DEFAULT_REGION_B, got["region_b"][1])
    if region_a == region_b:
        raise UsageError(
            f"--region-a and --region-b are both {region_a!r}; replication needs two regions"
        )

    endpoint, endpoint_where = got["endpoint"]
    url, url_where = got["endpoint_url"]
    url_a, url_a_where = got["endpoint_url_a"]
    url_b, url_b_where = got["endpoint_url_b"]
    if endpoint not in (None, "embedded", "aws"):
        raise UsageError(f"{endpoint_where}: {endpoint!r} is not 'embedded' or 'aws'")
    if endpoint is not None and (url or url_a or url_b):
        raise UsageError(
            f"{endpoint_where}={endpoint} conflicts with an endpoint URL; give one or the other"
        )
    if url and (url_a or url_b):
        raise UsageError(
            "--endpoint-url conflicts with --endpoint-url-a/--endpoint-url-b; give one or the other"
        )
    if bool(url_a) != bool(url_b):
        missing = "--endpoint-url-b" if url_a else "--endpoint-url-a"
        raise UsageError(f"{missing} is missing: per-region endpoints need both -a and -b")

    if url:
        mode, endpoint_a = EndpointMode.URL, validate_url(url, url_where)
        endpoint_b = endpoint_a
    elif url_a:
        mode = EndpointMode.PER_REGION
        endpoint_a, endpoint_b = (
            validate_url(url_a, url_a_where),
            validate_url(url_b or "", url_b_where),
        )
    elif endpoint == "aws":
        mode, endpoint_a, endpoint_b = EndpointMode.AWS, None, None
    else:
        mode, endpoint_a, endpoint_b = EndpointMode.EMBEDDED, None, None

    prefix = validate_prefix(got["prefix"][0] or DEFAULT_PREFIX, got["prefix"][1])
    shards = validate_shards(got["shards"][0] or DEFAULT_SHARDS, got["shards"][1])
    runs_dir = Path(got["runs_dir"][0] or DEFAULT_RUNS_DIR)

    return HarnessConfig(
        pipeline=pipeline,
        region_a=region_a,
        region_b=region_b,
        endpoint_mode=mode,
        endpoint_url_a=endpoint_a,
        endpoint_url_b=endpoint_b,
        prefix=prefix,
        shards=shards,
        runs_dir=runs_dir,
    )


def parse_config(argv: list[str], environ: Mapping[str, str] | None = None) -> HarnessConfig:
    """Convenience for tests and scripts: parse only the common options."""
    parser = argparse.ArgumentParser(add_help=False)
    add_common_options(parser)
    options, _ = parser.parse_known_args(argv)
    return config_from_options(options, environ)
