"""``xrh verify``: verify a run directory again, or compare two streams or two tables without a
ledger.

- ``xrh verify --run-dir runs/latest``: options come from the run's ``config.json``; endpoints
  from flags if given, else the run's ``endpoints.json`` (a running embedded endpoint), else the
  URLs in ``config.json``. An endpoint that is gone gives verdict unknown, exit code 2.
- ``xrh verify --stream NAME --endpoint-url-a URL --endpoint-url-b URL`` (or ``--endpoint aws``,
  or a running ``xrh endpoint``): source and target streams alone, no ledger; the report goes to
  a new run directory.
- ``xrh verify --table NAME [--table-b NAME]`` (endpoints as for ``--stream``): DynamoDB table
  NAME in region A against the same-named (or ``--table-b``) table in region B, no ledger
  (replication you run yourself: global tables, DMS); the report goes to a new run directory.
  A ``dynamodb`` run directory is verified the same way, with its ledger (``verify.tables``).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from verify.errors import VerifyUsageError
from xrh import runs
from xrh.config import (
    EndpointMode,
    HarnessConfig,
    add_common_options,
    config_from_options,
    validate_prefix,
    validate_url,
)

_ENDPOINT_FLAGS = ("endpoint", "endpoint_url", "endpoint_url_a", "endpoint_url_b")
_OVERRIDABLE = ("pipeline", "region_a", "region_b", "prefix")


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The whole verify command line, the harness's common options and verify's own (as
    ``python -m verify`` and the tests parse it; ``xrh verify`` adds them to its subparser)."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    add_common_options(parser)
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run-dir", type=Path, help="run directory to verify (e.g. runs/latest)")
    parser.add_argument("--stream", help="stream name (default {prefix}-stream); without "
                        "--run-dir: compare source and target streams alone")  # fmt: skip
    parser.add_argument("--table", help="without --run-dir: compare DynamoDB table NAME in "
                        "region A with the same-named table in region B (no ledger)")  # fmt: skip
    parser.add_argument("--table-b", help="with --table: the table's name in region B, if "
                        "different")  # fmt: skip
    parser.add_argument("--scan-segments", type=int, default=4,
                        help="parallel scan segments per table (table pipelines; default 4)")  # fmt: skip
    parser.add_argument("--fatal-duplicates", action="store_true",
                        help="duplicates make the verdict invalid (default: counted only)")  # fmt: skip
    parser.add_argument("--timeout", "--verify-timeout", dest="timeout", type=float, default=300.0,
                        help="seconds allowed for reading both regions (default 300)")  # fmt: skip
    parser.add_argument("--settle-seconds", type=float, default=30.0,
                        help="how long the target may make no progress before what it lacks "
                        "is called lost (default 30; bounded by --timeout)")  # fmt: skip
    parser.add_argument("--tolerance-ms", type=int, default=0,
                        help="clock tolerance for checkpoint claims, ms (default 0)")  # fmt: skip
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument(
        "--from-store",
        action="store_true",
        help="with --run-dir: re-check the read kept in verify.sqlite instead of reading the "
        "regions again (automatic when the run's endpoints are gone)",
    )


def _given(args: argparse.Namespace, dest: str) -> bool:
    return getattr(args, dest, None) not in (None, "")


def config_from_run(run: runs.RunDir) -> HarnessConfig:
    """The run's own options from its config.json (VerifyUsageError naming the file if bad)."""
    path = run.file(runs.CONFIG_FILE)
    try:
        raw = run.read_json(runs.CONFIG_FILE)
    except FileNotFoundError:
        raise VerifyUsageError(f"--run-dir {run.path}: no {runs.CONFIG_FILE}") from None
    except ValueError as exc:
        raise VerifyUsageError(f"{path}: not valid JSON ({exc})") from None
    try:
        return HarnessConfig(
            pipeline=str(raw.get("pipeline", "kinesis")),
            region_a=str(raw.get("region_a", HarnessConfig.region_a)),
            region_b=str(raw.get("region_b", HarnessConfig.region_b)),
            endpoint_mode=EndpointMode(raw.get("endpoint_mode", "embedded")),
            endpoint_url_a=raw.get("endpoint_url_a"),
            endpoint_url_b=raw.get("endpoint_url_b"),
            prefix=validate_prefix(str(raw.get("prefix", "xrh")), f"{path}: prefix"),
            shards=int(raw.get("shards", 4)),
            runs_dir=Path(raw.get("runs_dir", "runs")),
        )
    except (ValueError, TypeError, AttributeError) as exc:
        raise VerifyUsageError(f"{path}: unusable configuration ({exc})") from None


def urls_from_endpoints(payload: Any, config: HarnessConfig) -> tuple[str, str] | None:
    """URLs of regions A and B from an endpoints.json in any of the shapes it may take."""
    if not isinstance(payload, dict):
        return None

    def url_of(value: Any) -> str | None:
        if isinstance(value, str):
            return value
        if isinstance(value, dict):
            for name in ("url", "endpoint_url", "endpoint"):
                if isinstance(value.get(name), str):
                    return value[name]
        return None

    for a_name, b_name in (("endpoint_url_a", "endpoint_url_b"), ("a", "b"), ("A", "B"),
                           (config.region_a, config.region_b)):  # fmt: skip
        a, b = url_of(payload.get(a_name)), url_of(payload.get(b_name))
        if a and b:
            return a, b
    for nested in ("regions", "endpoints"):
        if isinstance(payload.get(nested), dict):
            found = urls_from_endpoints(payload[nested], config)
            if found:
                return found
    return None


def resolve_run_config(
    run: runs.RunDir, args: argparse.Namespace
) -> tuple[HarnessConfig, list[str]]:
    """Configuration for re-verifying ``run``; the list holds reasons for verdict unknown."""
    config = config_from_run(run)
    flags = config_from_options(args)
    overrides = {d: getattr(flags, d) for d in _OVERRIDABLE if _given(args, d)}
    if any(_given(args, d) for d in _ENDPOINT_FLAGS):
        overrides.update(
            endpoint_mode=flags.endpoint_mode,
            endpoint_url_a=flags.endpoint_url_a,
            endpoint_url_b=flags.endpoint_url_b,
        )
    config = dataclasses.replace(config, **overrides)
    if config.endpoint_mode is not EndpointMode.EMBEDDED or "endpoint_mode" in overrides:
        return config, []
    endpoints_file = run.file(runs.ENDPOINTS_FILE)
    found = None
    if endpoints_file.exists():
        try:
            found = urls_from_endpoints(run.read_json(runs.ENDPOINTS_FILE), config)
        except ValueError:
            found = None
    if found is None and config.endpoint_url_a and config.endpoint_url_b:
        found = (config.endpoint_url_a, config.endpoint_url_b)
    if found is None:
        return config, [
            f"the embedded endpoint of run {run.run_id} is not reachable (no {runs.ENDPOINTS_FILE}"
            " and no endpoint URLs recorded); start it or pass --endpoint-url-a/-b"
        ]
    url_a = validate_url(found[0], f"{endpoints_file}: region A URL")
    url_b = validate_url(found[1], f"{endpoints_file}: region B URL")
    return config.with_endpoints(url_a, url_b), []


def _endpoints_reachable(config: HarnessConfig, timeout: float = 2.0) -> bool:
    """Whether both regions' endpoints accept a connection (real AWS is assumed reachable)."""
    import socket
    from urllib.parse import urlsplit

    for url in (config.endpoint_url_a, config.endpoint_url_b):
        if url is None:
            continue
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            socket.create_connection((parts.hostname, port), timeout=timeout).close()
        except OSError:
            return False
    return True


def run(args: argparse.Namespace) -> int:
    from verify.report import print_summary
    from verify.runner import run_verify, stored_read_at

    if args.timeout is None or args.timeout <= 0:
        raise VerifyUsageError(f"--timeout {args.timeout}: must be a positive number of seconds")
    if args.settle_seconds is None or args.settle_seconds < 0:
        raise VerifyUsageError(f"--settle-seconds {args.settle_seconds}: must be 0 or more seconds")
    if args.tolerance_ms is None or args.tolerance_ms < 0:
        raise VerifyUsageError(f"--tolerance-ms {args.tolerance_ms}: must be 0 or more")
    segments = getattr(args, "scan_segments", 4)
    if segments is None or not 1 <= segments <= 1000:
        raise VerifyUsageError(f"--scan-segments {segments}: must be a whole number from 1 to 1000")
    table, table_b = getattr(args, "table", None), getattr(args, "table_b", None)
    if table_b and not table:
        raise VerifyUsageError(f"--table-b {table_b}: needs --table NAME (the table in region A)")
    if table and (args.run_dir is not None or args.stream):
        raise VerifyUsageError(
            f"--table {table}: compares two tables alone; it does not go with "
            + ("--run-dir" if args.run_dir is not None else "--stream")
        )
    if table:
        return _run_table(args, table, table_b, segments)
    incomplete: list[str] = []
    if args.run_dir is not None:
        run_dir = runs.open_run(args.run_dir)
        config, incomplete = resolve_run_config(run_dir, args)
    elif args.stream:
        config = config_from_options(args)
        if config.endpoint_mode is EndpointMode.EMBEDDED:
            from xrh.endpoint import resolve_config  # a running `xrh endpoint`, else UsageError

            config = resolve_config(config)
        run_dir = runs.create_run(config.runs_dir, config.to_public_dict())
    else:
        raise VerifyUsageError(
            "give --run-dir DIR (verify a run), --stream NAME (two streams) or --table NAME "
            "(two tables)"
        )
    from_store = bool(getattr(args, "from_store", False))
    if from_store and args.run_dir is None:
        raise VerifyUsageError("--from-store needs --run-dir")
    if (
        args.run_dir is not None
        and not from_store
        and stored_read_at(run_dir.path)
        and (incomplete or not _endpoints_reachable(config))
    ):
        from_store = True
        print(
            f"the regions of run {run_dir.run_id} are not reachable (the embedded endpoint "
            f"stops with its run): re-checking the read stored in {runs.VERIFY_STORE_FILE}",
            file=sys.stderr,
        )
    if config.pipeline not in ("kinesis", "dynamodb", "action-log", "active-active",
                               "postgres-cdc"):  # fmt: skip
        raise VerifyUsageError(
            f"--pipeline {config.pipeline}: verify supports the kinesis, dynamodb, "
            "action-log, active-active and postgres-cdc pipelines so far"
        )
    result = run_verify(
        run_dir.path,
        config,
        fatal_duplicates=args.fatal_duplicates,
        timeout_s=args.timeout,
        progress=not args.no_progress and sys.stderr.isatty(),
        tolerance_ms=args.tolerance_ms,
        stream=args.stream,
        incomplete=[] if from_store else incomplete,
        from_store=from_store,
        settle_s=args.settle_seconds,
        scan_segments=segments,
    )
    print_summary(result.report)
    print(f"report: {result.report_json}  {result.report_html}")
    return result.exit_code


def _run_table(args: argparse.Namespace, table: str, table_b: str | None, segments: int) -> int:
    """``--table``: check both tables exist (and share a key) before a run directory is made."""
    from verify.report import print_summary
    from verify.tables.collect import describe_pair
    from verify.tables.run import table_clients, verify_tables

    config = dataclasses.replace(config_from_options(args), pipeline="dynamodb")
    if config.endpoint_mode is EndpointMode.EMBEDDED:
        from xrh.endpoint import resolve_config  # a running `xrh endpoint`, else UsageError

        config = resolve_config(config)
    clients = table_clients(config, segments)
    describe_pair(clients, config, table, table_b or table,
                  option_b="--table-b" if table_b else "--table")  # fmt: skip
    run_dir = runs.create_run(config.runs_dir, config.to_public_dict())
    result = verify_tables(
        run_dir.path, config, table, table_b, timeout_s=args.timeout,
        progress=not args.no_progress and sys.stderr.isatty(), clients=clients,
        settle_s=args.settle_seconds, scan_segments=segments,
    )  # fmt: skip
    print_summary(result.report)
    print(f"report: {result.report_json}  {result.report_html}")
    return result.exit_code
