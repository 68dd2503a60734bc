"""``xrh replicate``'s options, shared by both pipelines, and their checks (bad usage: exit 3).

The dynamodb pipeline's own refusals are :func:`check_dynamodb`; the wiring is in
:mod:`replicator.runners.cli` (kinesis) and :mod:`replicator.runners.table_cli` (dynamodb).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from replicator.runners.poller import PollerSettings


DEFAULT_SCAN_SEGMENTS = 4
#: GetRecords of a DynamoDB stream returns at most 1,000 records.
STREAM_READ_LIMIT = 1000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--side",
        choices=["a", "b"],
        default="a",
        help="region this replicator runs in and reads from (writes to the other)",
    )
    parser.add_argument(
        "--behaviour",
        choices=["reference", "sample"],
        default="reference",
        help="copy logic: the reference replicator, or the published sample's behaviour "
        "reproduced (to see what verify catches; --pipeline kinesis, action-log and "
        "active-active: the dynamodb pipeline has none)",
    )
    parser.add_argument("--run-dir", default=None, help="run directory (default <runs-dir>/latest)")
    parser.add_argument("--worker-id", default=None, help="lease owner id (default host-pid)")
    parser.add_argument(
        "--until-drained",
        action="store_true",
        help="exit 0 once every shard is caught up and quiet for --quiet-seconds",
    )
    parser.add_argument("--quiet-seconds", type=float, default=3.0)
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=120.0,
        help="give up draining after this many seconds (exit 2)",
    )
    parser.add_argument("--max-seconds", type=float, default=None)
    parser.add_argument("--batch-size", type=int, default=1000,
                        help="GetRecords limit (1..10000); --pipeline dynamodb caps it at 1000, "
                        "the most a DynamoDB stream's GetRecords returns")  # fmt: skip
    parser.add_argument("--poll-interval", type=float, default=0.2)
    parser.add_argument("--lease-seconds", type=float, default=6.0)
    parser.add_argument(
        "--write-timeout",
        type=float,
        default=None,
        help="bound on one write to the target (connect + read timeout); a write starts only "
        "with this much lease left plus --max-clock-skew-ms (default --lease-seconds / 3)",
    )
    parser.add_argument(
        "--max-clock-skew-ms",
        type=int,
        default=500,
        help="clock skew allowed between workers sharing leases",
    )
    parser.add_argument(
        "--active-region-ttl",
        type=float,
        default=1.0,
        help="cache bound: an active-region switch takes effect within this",
    )
    parser.add_argument(
        "--max-commit-delay-ms",
        type=int,
        default=10_000,
        help="watermark assumption D: records reach the source within D of commit",
    )
    parser.add_argument("--watermark-margin-ms", type=int, default=1_000)
    parser.add_argument(
        "--handover-timeout",
        type=float,
        default=30.0,
        help="after a failover, the new region forwards records that arrived after the switch "
        "once the previous region finished its handover, or after this many seconds without "
        "a heartbeat from it",
    )
    parser.add_argument(
        "--handover-grace",
        type=float,
        default=2.0,
        help="after a failover, the previous region still copies what its producers wrote into "
        "its stream up to this many seconds after the switch (requests begun before it)",
    )
    parser.add_argument("--max-record-bytes", type=int, default=1024 * 1024)
    parser.add_argument("--max-request-bytes", type=int, default=5 * 1024 * 1024)
    parser.add_argument("--max-attempts", type=int, default=10)
    parser.add_argument(
        "--scan-segments",
        type=int,
        default=None,
        help="--pipeline dynamodb: parallel scan segments (threads) of the bootstrap copy "
        "(default 4; a resumed copy keeps the count it started with)",
    )
    parser.add_argument(
        "--scan-page-size",
        type=int,
        default=None,
        help="--pipeline dynamodb: items per Scan page of the bootstrap copy, the unit of its "
        "recorded progress (default 1000)",
    )
    parser.add_argument(
        "--bootstrap",
        choices=["auto", "never"],
        default="auto",
        help="--pipeline dynamodb: auto copies the source table before live apply unless the "
        "copy is complete or live-apply checkpoints exist; never starts live apply at once",
    )
    parser.add_argument("--start-at-latest", action="store_true",
                        help="shards without a checkpoint start at this replicator's start time "
                        "instead of TRIM_HORIZON; older records are skipped, so no watermark is "
                        "claimed while such a shard is listed (--pipeline kinesis only: the "
                        "dynamodb pipeline replays its stream over the bootstrap copy)")  # fmt: skip


def check(args: argparse.Namespace) -> None:
    from xrh.errors import UsageError

    if not 1 <= args.batch_size <= 10_000:
        raise UsageError(f"--batch-size {args.batch_size} is outside 1..10000")
    for name in (
        "quiet_seconds", "drain_timeout", "poll_interval", "active_region_ttl", "handover_timeout",
        "handover_grace",
    ):  # fmt: skip
        if getattr(args, name) < 0:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    if args.lease_seconds <= 0 or args.max_attempts < 1:
        raise UsageError("--lease-seconds must be > 0 and --max-attempts >= 1")
    if args.write_timeout is not None and args.write_timeout <= 0:
        raise UsageError(f"--write-timeout must be > 0, got {args.write_timeout}")
    if args.max_clock_skew_ms < 0:
        raise UsageError(f"--max-clock-skew-ms must be >= 0, got {args.max_clock_skew_ms}")
    guard = write_timeout(args) + args.max_clock_skew_ms / 1000
    if guard > args.lease_seconds / 2:
        raise UsageError(
            f"--write-timeout plus --max-clock-skew-ms ({guard:g} s) must be at most half of "
            f"--lease-seconds ({args.lease_seconds:g} s): a write must fit in the lease"
        )
    if args.max_request_bytes < args.max_record_bytes:
        raise UsageError("--max-request-bytes must be >= --max-record-bytes")


def write_timeout(args: argparse.Namespace) -> float:
    return args.write_timeout if args.write_timeout is not None else args.lease_seconds / 3


def write_timeouts(args: argparse.Namespace) -> dict[str, float]:
    """The target clients' connect and read timeouts, adding up to ``--write-timeout``: a write
    to the target then ends inside the lease it started in (:mod:`replicator.core.fence`)."""
    bound = write_timeout(args)
    return {"connect_timeout": bound / 4, "read_timeout": bound * 3 / 4}


def poller_settings(
    args: argparse.Namespace, *, batch_limit: int, start_at_latest: bool
) -> PollerSettings:
    """The poller's settings from the options both pipelines share."""
    from replicator.runners.poller import PollerSettings

    return PollerSettings(
        batch_limit=batch_limit,
        poll_interval_s=args.poll_interval,
        lease_duration_s=args.lease_seconds,
        renew_interval_s=max(0.2, args.lease_seconds / 4),
        write_timeout_s=write_timeout(args),
        max_clock_skew_s=args.max_clock_skew_ms / 1000,
        quiet_s=args.quiet_seconds,
        drain_timeout_s=args.drain_timeout,
        max_seconds=args.max_seconds,
        until_drained=args.until_drained,
        start_at_latest=start_at_latest,
    )


def check_dynamodb(args: argparse.Namespace) -> None:
    """Refusals specific to the dynamodb pipeline (UsageError, exit 3)."""
    from xrh.errors import UsageError

    if getattr(args, "behaviour", "reference") == "sample":
        raise UsageError(
            "--behaviour sample: the dynamodb pipeline has no sample behaviour yet; run the "
            "reference replicator (drop --behaviour sample)"
        )
    if getattr(args, "start_at_latest", False):
        raise UsageError(
            "--start-at-latest cannot be used with --pipeline dynamodb: live apply replays the "
            "table's stream from TRIM_HORIZON over the bootstrap copy, and starting at the "
            "latest record would skip the changes made during the copy"
        )
    segments = scan_segments(args)
    if not 1 <= segments <= 1000:
        raise UsageError(f"--scan-segments {segments} is outside 1..1000")
    if args.scan_page_size is not None and not 1 <= args.scan_page_size <= 10_000:
        raise UsageError(f"--scan-page-size {args.scan_page_size} is outside 1..10000")


def scan_segments(args: argparse.Namespace) -> int:
    value = getattr(args, "scan_segments", None)
    return DEFAULT_SCAN_SEGMENTS if value is None else value


def dynamodb_batch_limit(batch_size: int) -> int:
    """The poller's read limit for a DynamoDB stream: ``--batch-size`` capped at 1,000, the most
    one GetRecords returns. The poller calls a read shorter than its limit "at the tip", so a
    larger limit would take every full read for the tip."""
    return min(batch_size, STREAM_READ_LIMIT)
