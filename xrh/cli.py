"""The ``xrh`` command: ``endpoint``, ``provision``, ``failover``, ``replicate``, ``verify``.

Each subcommand gets the common options of :mod:`xrh.config`; ``replicate`` and ``verify`` live
in their packages (``replicator.runners.cli``, ``verify.cli``) and are imported only when used,
so ``xrh verify`` never loads the replicator and vice versa. A
:class:`~xrh.errors.HarnessError` becomes one line on stderr and its exit code (3 for usage);
argparse's own usage errors exit 3 too.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
from collections.abc import Callable
from typing import NoReturn

from xrh import early_signals
from xrh.config import HarnessConfig, add_common_options, config_from_options
from xrh.errors import EXIT_USAGE, HarnessError, UsageError

# subcommand -> (module, help). Modules expose add_arguments(parser) and run(args) -> int.
EXTERNAL_COMMANDS = {
    "replicate": ("replicator.runners.cli", "run the reference replicator as a standalone poller"),
    "capture": ("replicator.runners.capture_cli", "capture PostgreSQL changes into {prefix}-cdc"),
    "verify": ("verify.cli", "verify a run (or two streams) and write report.json and report.html"),
    "drill": ("xrh.drills.runner", "run a fault drill (load + fault schedule + verify), or --all"),
}


class _Parser(argparse.ArgumentParser):
    """argparse that exits 3 (bad usage) instead of 2, which means 'unknown' here."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _endpoint_command(args: argparse.Namespace) -> int:
    import os

    from xrh.endpoint import EmbeddedEndpoint
    from xrh.faults import FAULTS_ENV, parse_faults
    from xrh.runs import create_run

    config = config_from_options(args)
    # Flags win over the environment (--faults '' turns XRH_FAULTS off); checked before any start.
    faults, faults_source = (
        (args.faults, "--faults")
        if args.faults is not None
        else (os.environ.get(FAULTS_ENV), FAULTS_ENV)
    )
    plan = parse_faults(faults, source=faults_source)
    if plan is not None and (config.endpoint_url_a or config.endpoint_mode.value == "aws"):
        raise UsageError(
            f"{faults_source}: faults are injected by the embedded endpoint only; "
            "drop --endpoint-url*/--endpoint aws (or the fault spec)"
        )
    if config.endpoint_url_a or config.endpoint_mode.value == "aws":
        raise UsageError(
            "xrh endpoint starts the embedded endpoint; it takes no --endpoint* option"
        )
    spec = plan.spec if plan else None
    run = create_run(
        config.runs_dir,
        {**config.to_public_dict(), "command": "endpoint", "faults": spec, "seed": args.seed},
    )
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with EmbeddedEndpoint(config, run_dir=run.path, faults=spec, seed=args.seed) as endpoint:
        print(f"region A {config.region_a}: {endpoint.url_of('a')}")
        print(f"region B {config.region_b}: {endpoint.url_of('b')}")
        print(f"run directory: {run.path}")
        if spec:
            seeded = f" (seed {args.seed})" if args.seed is not None else ""
            print(f"injecting faults{seeded}: {spec}; each one logged to {endpoint.faults_log}")
        print(
            "use: xrh provision --pipeline kinesis "
            f"--endpoint-url-a {endpoint.url_of('a')} --endpoint-url-b {endpoint.url_of('b')}"
        )
        print("Ctrl-C stops both regions.", flush=True)
        while not stop.wait(0.5):
            if not endpoint.alive():
                print("an embedded region stopped unexpectedly; shutting down", file=sys.stderr)
                return 2
    print("stopped both regions")
    return 0


def _provision_command(args: argparse.Namespace) -> int:
    from xrh.aws import AwsClients
    from xrh.config import EndpointMode
    from xrh.endpoint import resolve_config
    from xrh.provision import apply, plan

    config: HarnessConfig = resolve_config(config_from_options(args))
    clients = AwsClients(config)
    steps = plan(config, clients, destroy=args.destroy)
    changes = [s for s in steps if s.changes]
    if not changes:
        print(
            "nothing to do: "
            + ("nothing of ours is there" if args.destroy else "everything exists")
        )
        for step in steps:
            print("  " + step.describe())
        return 0
    if config.endpoint_mode is EndpointMode.AWS and not args.yes:
        print("On real AWS this would:")
        for step in changes:
            print("  " + step.describe())
        raise UsageError("real AWS: re-run with --yes to carry this out")
    for step in steps:
        if not step.changes:
            print("  " + step.describe())
    apply(steps, clients, report=lambda line: print("  " + line, flush=True))
    return 0


def _failover_command(args: argparse.Namespace) -> int:
    """Make ``--to`` the active region in both regions' tables, with a handover time, so the
    replicators hand over without losing records in flight (replicator.core.active)."""
    import time

    from replicator.adapters.dynamodb import DynamoActiveRegion, set_active_region
    from xrh.aws import AwsClients
    from xrh.config import EndpointMode, Side
    from xrh.endpoint import resolve_config
    from xrh.resources import ResourceNames

    config = resolve_config(config_from_options(args))
    names = ResourceNames(config.prefix)
    to = Side(args.to)
    clients = AwsClients(config)
    current = {}
    items = {}
    for side in Side:
        item = (
            clients.client("dynamodb", side)
            .get_item(
                TableName=names.active_region_table,
                Key={"streamName": {"S": names.stream}},
                ConsistentRead=True,
            )
            .get("Item", {})
        )
        items[side] = item
        current[side] = item.get("activeRegion", {}).get("S")
    _wait_for_handover(config, clients, names, items, args)
    if all(region == config.region(to) for region in current.values()):
        print(f"nothing to do: {config.region(to)} is already active for {names.stream}")
        return 0
    previous = current[to.other] or current[to]
    if config.endpoint_mode is EndpointMode.AWS and not args.yes:
        print(
            f"On real AWS this would make {config.region(to)} active for {names.stream} "
            f"(now {previous}) in both regions' {names.active_region_table}."
        )
        raise UsageError("real AWS: re-run with --yes to carry this out")
    since_ms = int(time.time() * 1000)
    # The switch in force now joins the history: the new region may still be working off what
    # arrived under it, and must keep treating those records by that switch's handover.
    latest = max(items.values(), key=lambda i: int(i.get("activeSinceMs", {}).get("N", "0")))
    assignment = DynamoActiveRegion.assignment_of(latest) if latest.get("activeRegion") else None
    earlier = [] if assignment is None or assignment.switch is None else [assignment.switch]
    earlier += list(assignment.earlier if assignment is not None else ())
    for side in (to.other, to):  # the old region first: it learns to stop at since_ms
        set_active_region(
            clients.client("dynamodb", side),
            names.active_region_table,
            names.stream,
            config.region(to),
            since_ms=since_ms,
            previous_region=previous,
            earlier=earlier,
        )
    print(
        f"{config.region(to)} is active for {names.stream} since {since_ms} (was {previous}); "
        "records that arrived before then are still copied by the previous region"
    )
    return 0


# A previous region whose replicator has not written a heartbeat this long after the switch
# is not handing over (none runs there): nothing to wait for.
NO_HANDOVER_MS = 10_000


def _wait_for_handover(config, clients, names, items, args) -> None:  # noqa: ANN001
    """A switch made while the previous one's handover is still running would let the old
    region's late copies come back (replicator.core.handover): wait for it to complete (or
    for its previous region to stop heartbeating), up to --wait seconds; --force skips this.
    What the new region still works off after that keeps the first switch's gate: the item's
    switchHistory remembers it."""
    import time

    from replicator.adapters.dynamodb import DynamoHandoverStore
    from replicator.core.handover import HandoverKey, handover_in_progress

    if args.force:
        return
    item = next((i for i in items.values() if "activeSinceMs" in i and "previousRegion" in i), None)
    if item is None:
        return
    new_region = item.get("activeRegion", {}).get("S")
    key = HandoverKey(names.stream, item["previousRegion"]["S"], new_region,
                      int(item["activeSinceMs"]["N"]))  # fmt: skip
    if key.previous == key.new or new_region not in (config.region_a, config.region_b):
        return
    store = DynamoHandoverStore(
        clients.client("dynamodb", config.side_of(new_region)), names.checkpoint_table
    )
    deadline = time.monotonic() + args.wait
    said = False
    while handover_in_progress(store, key, int(time.time() * 1000)):
        state = store.state(key)
        if state.heartbeat_ms is None and time.time() * 1000 - key.since_ms > NO_HANDOVER_MS:
            print(f"no replicator of {key.previous} took up the handover of the last switch "
                  f"within {NO_HANDOVER_MS // 1000} s: switching", flush=True)  # fmt: skip
            return
        if time.monotonic() >= deadline:
            raise UsageError(
                f"the handover from {key.previous} to {key.new} (switched at {key.since_ms}) "
                f"is still running after {args.wait:g} s; wait for it, or pass --force (the "
                "old region's late copies may then come back)"
            )
        if not said:
            print(f"waiting for the handover from {key.previous} to {key.new} to complete...",
                  flush=True)  # fmt: skip
            said = True
        time.sleep(0.5)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="xrh", description="Cross-region replication harness.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    endpoint = sub.add_parser("endpoint", help="start the embedded two-region endpoint and wait")
    add_common_options(endpoint)
    endpoint.add_argument(
        "--faults",
        default=None,
        help="inject faults: REGION:Operation:kind=value,... with kinds partial, throttle, "
        "error, lost-answer (probability 0..1) and latency (ms), e.g. "
        "'a:PutRecords:partial=0.05,b:*:latency=20' [env XRH_FAULTS]",
    )
    endpoint.add_argument("--seed", type=int, default=None, help="seed of the fault decisions")
    endpoint.set_defaults(handler=_endpoint_command)

    provision = sub.add_parser(
        "provision", help="create (or --destroy) a pipeline's resources in both regions"
    )
    add_common_options(provision)
    provision.add_argument("--destroy", action="store_true", help="remove what provisioning made")
    provision.add_argument("--yes", action="store_true", help="confirm changes on real AWS")
    provision.set_defaults(handler=_provision_command)

    failover = sub.add_parser(
        "failover", help="switch the active region, handing over without loss"
    )
    add_common_options(failover)
    failover.add_argument("--to", required=True, choices=["a", "b"], help="region to make active")
    failover.add_argument("--yes", action="store_true", help="confirm the switch on real AWS")
    failover.add_argument(
        "--wait",
        type=float,
        default=60.0,
        help="seconds to wait for the previous switch's handover (default 60)",
    )
    failover.add_argument(
        "--force", action="store_true", help="switch even while the previous handover is running"
    )
    failover.set_defaults(handler=_failover_command)

    for name, (module, help_text) in EXTERNAL_COMMANDS.items():
        command = sub.add_parser(name, help=help_text)
        add_common_options(command)
        command.set_defaults(handler=_lazy(module), module=module)
        _add_external_arguments(command, module)
    return parser


def _lazy(module: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        return int(importlib.import_module(module).run(args))

    return run


def _add_external_arguments(parser: argparse.ArgumentParser, module: str) -> None:
    # Importing a subcommand's module only to describe its options would load the replicator
    # for `xrh verify`; its options are registered only when that subcommand is the one asked for.
    wanted = next((a for a in sys.argv[1:] if not a.startswith("-")), None)
    if wanted is None or EXTERNAL_COMMANDS.get(wanted, ("",))[0] != module:
        return
    try:
        importlib.import_module(module).add_arguments(parser)
    except ModuleNotFoundError as exc:
        if exc.name != module and not module.startswith(str(exc.name)):
            raise
        parser.set_defaults(handler=_missing(module))


def _missing(module: str) -> Callable[[argparse.Namespace], int]:
    def run(_args: argparse.Namespace) -> int:
        raise UsageError(f"this installation has no {module}")

    return run


def main(argv: list[str] | None = None) -> int:
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command not in ("replicate", "capture"):  # only these take over the early signals
        early_signals.restore_defaults()
    try:
        return int(args.handler(args))
    except HarnessError as exc:
        print(f"xrh {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"xrh {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
