"""The load generator's own options, resolved once into a frozen :class:`LoadOptions`.

Registered on Locust's parser (shown in the web UI too) by :mod:`loadgen.locust_users`, next to
the harness's common options (:func:`xrh.config.add_common_options`). Everything is checked
here, before any load: a bad template, keyspace or fault spec stops the run with a message
naming the option and the value (exit code 3).

Pipelines: the options apply to ``kinesis``, ``dynamodb`` and ``action-log`` alike unless said
otherwise, with defaults per pipeline where the work differs (``--rate-per-user`` 100 records/s
for kinesis, 10 writes/s for dynamodb, 10 actions/s for action-log; ``--batch-size`` 500
records per PutRecords for kinesis and action-log, 100 writes buffered per flush for dynamodb).
``--batch-writes``, ``--bootstrap-items`` and ``--scan-segments`` drive the dynamodb pipeline's
table writes; ``--ops`` weighs the dynamodb pipeline's writes and the action log's actions
(each its own operations and defaults); ``--lazy-rate`` caps the action log's lazy consumer;
active-active has the dynamodb pipeline's defaults and :mod:`loadgen.active_options`;
postgres-cdc paces transactions (``--rate-per-user`` 10) and has :mod:`loadgen.postgres_options`
(``--batch-size`` and ``--linger`` do not apply to it: a transaction is sent as it is drawn). Given to a
run of another pipeline they are refused (exit 3): a run that silently ignores what was asked for
proves something else.
``--drill NAME`` takes the drill of the run's pipeline, and the drill's load options
(``Drill.load_args``, e.g. ``--bootstrap-items 20000``) for each such option left unset.

``--faults`` (or ``XRH_FAULTS`` when the flag is empty) is the spec of :mod:`xrh.faults`; the
orchestrator gives it to the embedded endpoint once the run's resources are provisioned. Faults
are injected by the embedded endpoint only, so a spec with ``--endpoint-url*`` or
``--endpoint aws`` is a usage error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from loadgen import active_options as aa
from loadgen import postgres_options as pg
from loadgen.actions import DEFAULT_ACTION_OPS
from loadgen.errors import LoadgenUsageError
from loadgen.item_writes import DEFAULT_OPS, ops_text
from loadgen.keyspace import DISTRIBUTIONS, KeyspaceSpec
from loadgen.templates import Template, compile_template, load_template_option
from xrh.drills import Drill, get_drill
from xrh.errors import UsageError
from xrh.faults import FAULTS_ENV, parse_faults

# embedded and reference: the reference replicator; sample: the published sample's behaviour,
# reproduced; external: produce and verify only (a replicator you run)
REPLICATOR_MODES = ("embedded", "reference", "sample", "external")
LOAD_SHAPES = ("steady", "step", "spike")
LOAD_PIPELINES = ("kinesis", "dynamodb", "action-log", "active-active", "postgres-cdc")  # what it drives
TABLE_PIPELINES = ("dynamodb", "active-active")  # writes buffered per flush, not PutRecords
#: per pipeline: records (kinesis) or writes (dynamodb) per second per user. A table write is
#: mostly one call (about 1.5 ms of botocore CPU in the Locust process and a few ms of moto's):
#: the main command's 20 users at 10 writes/s (200/s) leave the replicator room on two cores;
#: at 20 writes/s (400/s asked) they were measured at about 275/s, moto's latency tenfold.
#: An action is one record but one to 25 table writes by each of the action log's two
#: consumers, so the action log starts where the dynamodb pipeline does. postgres-cdc: transactions
#: (1..--statements-per-txn statements each) per second per user.
DEFAULT_RATE = {"kinesis": 100.0, "dynamodb": 10.0, "action-log": 10.0, "active-active": 10.0,
                "postgres-cdc": 10.0}  # fmt: skip
#: per pipeline: records per PutRecords (kinesis, action-log), writes per flush (dynamodb)
DEFAULT_BATCH = {"kinesis": 500, "dynamodb": 100, "action-log": 500, "active-active": 100}
MAX_BATCH = {"kinesis": 500, "dynamodb": 10_000, "action-log": 500}
#: action-log: actions per second the lazy consumer applies (``--max-rate`` of side B's)
DEFAULT_LAZY_RATE = 2000.0
DEFAULT_BATCH_WRITES = 0.25
DEFAULT_SCAN_SEGMENTS = 4
MAX_SCAN_SEGMENTS = 1000
MAX_BOOTSTRAP_ITEMS = 100_000_000
# dest, flag, the pipelines it applies to: options of some pipelines only
PIPELINE_OPTIONS = (("ops", "--ops", ("dynamodb", "action-log", "active-active")),
                    ("batch_writes", "--batch-writes", ("dynamodb",)),
                    ("bootstrap_items", "--bootstrap-items", ("dynamodb",)),
                    ("scan_segments", "--scan-segments", ("dynamodb",)),
                    ("lazy_rate", "--lazy-rate", ("action-log",)),
                    *((d, f, ("active-active",)) for d, f in aa.ACTIVE_OPTIONS),
                    *((d, f, ("postgres-cdc",)) for d, f in pg.POSTGRES_OPTIONS))  # fmt: skip
DYNAMODB_OPTIONS = tuple((d, f) for d, f, p in PIPELINE_OPTIONS if "dynamodb" in p)


@dataclass(frozen=True, slots=True)
class LoadOptions:
    template_text: str
    template: Template
    keyspace: KeyspaceSpec
    rate_per_user: float | None  # records/s per user; None: as fast as possible
    batch_size: int
    linger_s: float
    replicator: str
    verify: bool
    seed: int | None
    load_shape: str
    drain_timeout_s: float
    verify_timeout_s: float
    final_batch_timeout_s: float
    faults: str | None = None  # a validated xrh.faults spec, injected by the embedded endpoint
    settle_s: float = 30.0  # verify waits this long without progress before calling records lost
    drill: Drill | None = None  # --drill NAME: a fault schedule played during the load
    run_time_s: float | None = None  # Locust's --run-time, for the drill's schedule
    pipeline: str = "kinesis"  # the defaults above were resolved for this pipeline
    ops: tuple[tuple[str, float], ...] = DEFAULT_OPS  # dynamodb: (op, weight)
    batch_writes: float = DEFAULT_BATCH_WRITES  # dynamodb: share of puts/deletes batched
    bootstrap_items: int = 0  # dynamodb: items loaded into A's table before the replicator
    scan_segments: int = DEFAULT_SCAN_SEGMENTS  # dynamodb: the replicator's parallel scan
    lazy_rate: float = DEFAULT_LAZY_RATE  # action-log: the lazy consumer's actions/s
    active: aa.ActiveOptions = aa.ActiveOptions()  # active-active: regions, hot set, skew, stamps
    postgres: pg.PostgresOptions = pg.PostgresOptions()  # postgres-cdc: transactions, database


def add_options(parser: Any, *, web_ui: bool = True) -> None:
    """Register the options on an argparse-like parser (Locust's accepts include_in_web_ui)."""

    def add(*flags: str, **kwargs: Any) -> None:
        if web_ui:
            kwargs["include_in_web_ui"] = True
        parser.add_argument(*flags, **kwargs)

    add("--template", default="", help="Kinesis Data Generator template, inline or @file "
        "(default: DESIGN.md's payload with key, millisecond commitTimestamp and trace)")  # fmt: skip
    add("--keys", type=int, default=10_000, help="keyspace size (default 10000)")
    add(
        "--key-distribution",
        default="uniform",
        help=f"{' | '.join(DISTRIBUTIONS)} (default uniform)",
    )
    add("--key-skew", type=float, default=1.1, help="zipf skew (default 1.1)")
    add("--hot-key-share", type=float, default=0.5, help="hot: share of records on the hot key")
    add("--rate-per-user", type=float, default=None,
        help="records (kinesis), table writes (dynamodb), actions (action-log) or transactions "
        "(postgres-cdc) per second per user; 0 for as fast as possible (default 100 for "
        "kinesis, 10 for the others)")  # fmt: skip
    add("--batch-size", type=int, default=None, help="kinesis, action-log: records per "
        "PutRecords (default 500); dynamodb: writes buffered per flush (default 100)")  # fmt: skip
    add("--linger", type=float, default=0.2, help="seconds a record may wait for a fuller batch")
    add("--replicator", default="embedded",
        help="embedded or reference: start the reference replicator; sample: the published "
        "sample's behaviour, reproduced; external: produce and verify only")  # fmt: skip
    add("--drill", default="", help="play a drill's fault schedule during the load "
        "(throttle-storm, lost-answers, replicator-crash, target-outage, ...; see xrh drill)")  # fmt: skip
    add("--no-verify", action="store_true", default=False, help="skip verify at the end")
    add("--seed", type=int, default=None, help="seed for templates and keys (reproducible runs)")
    add("--load-shape", default="steady", help="steady | step | spike (over --run-time)")
    add("--drain-timeout", type=float, default=120.0,
        help="seconds the replicator may take to catch up after load stops (default 120)")  # fmt: skip
    add("--verify-timeout", type=float, default=300.0, help="verify's time budget in seconds")
    add("--settle-seconds", type=float, default=30.0,
        help="verify waits for the target while it makes progress, and calls what it lacks "
        "lost after this many seconds without any (default 30)")  # fmt: skip
    add("--faults", default="",
        help="inject faults in the embedded endpoint: REGION:Operation:kind=value,... (kinds "
        "partial, throttle, error, lost-answer with a probability, latency in ms), e.g. "
        "'a:PutRecords:partial=0.05' [env XRH_FAULTS]")  # fmt: skip
    add("--ops", default=None,
        help=f"dynamodb: operations by weight (default {ops_text(DEFAULT_OPS)}); action-log: "
        f"actions by weight (default {ops_text(DEFAULT_ACTION_OPS)}); active-active: "
        f"(default {ops_text(aa.DEFAULT_ACTIVE_OPS)})")  # fmt: skip
    add("--batch-writes", default=None, help="dynamodb: share of puts and deletes "
        f"sent through BatchWriteItem, 0..1 (default {DEFAULT_BATCH_WRITES})")  # fmt: skip
    add("--bootstrap-items", default=None, help="dynamodb: items loaded into region "
        "A's table before the replicator starts, so its bootstrap copy races the load "
        "(default 0)")  # fmt: skip
    add("--scan-segments", default=None, help="dynamodb: the replicator's parallel "
        f"scan segments for its bootstrap copy (default {DEFAULT_SCAN_SEGMENTS})")  # fmt: skip
    add("--lazy-rate", default=None, help="action-log: actions per second the lazy consumer "
        f"(region B's table) applies (default {DEFAULT_LAZY_RATE:g})")  # fmt: skip
    aa.add_active_options(add)
    pg.add_postgres_options(add)


def _choice(value: Any, choices: tuple[str, ...], flag: str) -> str:
    text = str(value or choices[0]).strip().lower()
    if text not in choices:
        raise LoadgenUsageError(f"{flag} {value!r}: choose one of {', '.join(choices)}")
    return text


def _number(value: Any, flag: str, *, minimum: float, cast: type = float) -> Any:
    try:
        number = cast(value)
    except (TypeError, ValueError):
        raise LoadgenUsageError(f"{flag} {value!r}: not a number") from None
    if number < minimum:
        raise LoadgenUsageError(f"{flag} {number}: must be at least {minimum}")
    return number


def _faults(parsed: Any) -> str | None:
    """The fault spec (flag, else ``XRH_FAULTS``), validated; None when there is none."""
    flag = getattr(parsed, "faults", None)
    text, source = (flag, "--faults") if flag else (os.environ.get(FAULTS_ENV), FAULTS_ENV)
    try:
        plan = parse_faults(text, source=source)
    except UsageError as exc:
        raise LoadgenUsageError(str(exc)) from None
    if plan is None:
        return None
    from xrh.config import EndpointMode, config_from_options

    if config_from_options(parsed).endpoint_mode is not EndpointMode.EMBEDDED:
        raise LoadgenUsageError(
            f"{source}: faults are injected by the embedded endpoint only; "
            "drop --endpoint-url*/--endpoint aws (or the fault spec)"
        )
    return plan.spec


def _given(value: Any) -> bool:
    return value is not None and value != ""


def _pipeline(parsed: Any) -> str:
    from xrh.config import config_from_options

    try:
        return config_from_options(parsed).pipeline
    except UsageError as exc:
        raise LoadgenUsageError(str(exc)) from None


def _drill_values(drill: Drill) -> dict[str, str]:
    """A drill's load options (``("--bootstrap-items", "20000")``) by destination."""
    args = list(drill.load_args)
    if len(args) % 2:
        raise LoadgenUsageError(f"--drill {drill.name}: its load options {args} are not pairs")
    pairs = zip(args[::2], args[1::2], strict=True)
    return {flag.lstrip("-").replace("-", "_"): value for flag, value in pairs}


def load_options(parsed: Any, pipeline: str | None = None) -> LoadOptions:
    """Check and resolve the parsed options; LoadgenUsageError / TemplateError if wrong.

    ``pipeline``: the run's (``HarnessConfig.pipeline``); resolved from ``parsed`` if None."""
    pipeline = pipeline or _pipeline(parsed)
    drill = get_drill(str(parsed.drill), pipeline, option="--drill") if _given(
        getattr(parsed, "drill", None)) else None  # fmt: skip
    from_drill = _drill_values(drill) if drill else {}

    def g(name: str, default: Any = None) -> Any:
        value = getattr(parsed, name, None)
        if not _given(value):
            value = from_drill.get(name)
        return value if _given(value) else default

    for dest, flag, pipelines in PIPELINE_OPTIONS:
        if pipeline not in pipelines and _given(getattr(parsed, dest, None)):
            names = ", ".join(pipelines[:-1]) + " and " * (len(pipelines) > 1) + pipelines[-1]
            raise LoadgenUsageError(f"{flag} {getattr(parsed, dest)!r}: applies to --pipeline "
                                    f"{names} only (this run's pipeline is {pipeline})")  # fmt: skip
    # A drill that needs particular records brings its template, unless the user gave one.
    text = load_template_option(g("template") or (drill.template if drill else None) or "")
    template = compile_template(text)
    keyspace = KeyspaceSpec(
        size=_number(g("keys", 10_000), "--keys", minimum=1, cast=int),
        distribution=_choice(g("key_distribution"), DISTRIBUTIONS, "--key-distribution"),
        skew=_number(g("key_skew", 1.1), "--key-skew", minimum=0),
        hot_share=_number(g("hot_key_share", 0.5), "--hot-key-share", minimum=0),
    )
    rate = _number(g("rate_per_user", DEFAULT_RATE.get(pipeline, 100.0)), "--rate-per-user",
                   minimum=0)  # fmt: skip
    raw_seed = g("seed")
    seed = (
        None if raw_seed in ("", None) else _number(raw_seed, "--seed", minimum=-(2**63), cast=int)
    )
    batch = _number(g("batch_size", DEFAULT_BATCH.get(pipeline, 500)), "--batch-size",
                    minimum=1, cast=int)  # fmt: skip
    if pipeline in TABLE_PIPELINES and batch > MAX_BATCH["dynamodb"]:
        raise LoadgenUsageError(f"--batch-size {batch}: at most {MAX_BATCH['dynamodb']} writes "
                                "buffered per flush")  # fmt: skip
    if pipeline not in TABLE_PIPELINES and batch > MAX_BATCH["kinesis"]:
        raise LoadgenUsageError(f"--batch-size {batch}: PutRecords takes at most 500 records")
    batch_writes = _number(g("batch_writes", DEFAULT_BATCH_WRITES), "--batch-writes", minimum=0)
    if not 0 <= batch_writes <= 1:
        raise LoadgenUsageError(f"--batch-writes {batch_writes}: a share, 0..1")
    bootstrap = _whole(g("bootstrap_items", 0), "--bootstrap-items", 0, MAX_BOOTSTRAP_ITEMS)
    segments = _whole(g("scan_segments", DEFAULT_SCAN_SEGMENTS), "--scan-segments", 1,
                      MAX_SCAN_SEGMENTS)  # fmt: skip
    lazy_rate = _number(g("lazy_rate", DEFAULT_LAZY_RATE), "--lazy-rate", minimum=0)
    if not 0 < lazy_rate < float("inf"):
        raise LoadgenUsageError(f"--lazy-rate {lazy_rate}: actions per second, above 0")
    ops = aa.pipeline_ops(pipeline, g("ops"))
    active = aa.active_options(g, keyspace.size) if pipeline == aa.PIPELINE else aa.ActiveOptions()
    postgres = (pg.postgres_options(g, parsed) if pipeline == "postgres-cdc"
                else pg.PostgresOptions())  # fmt: skip
    return LoadOptions(
        template_text=text,
        template=template,
        keyspace=keyspace,
        rate_per_user=rate or None,
        batch_size=batch,
        linger_s=_number(g("linger", 0.2), "--linger", minimum=0),
        replicator=_choice(g("replicator"), REPLICATOR_MODES, "--replicator"),
        verify=not bool(g("no_verify", False)),
        seed=seed,
        load_shape=_choice(g("load_shape"), LOAD_SHAPES, "--load-shape"),
        drain_timeout_s=_number(g("drain_timeout", 120.0), "--drain-timeout", minimum=1),
        verify_timeout_s=_number(g("verify_timeout", 300.0), "--verify-timeout", minimum=1),
        final_batch_timeout_s=30.0,
        faults=_faults(parsed),
        settle_s=_number(g("settle_seconds", 30.0), "--settle-seconds", minimum=0),
        drill=drill,
        run_time_s=float(g("run_time")) if g("run_time") else None,
        pipeline=pipeline,
        ops=ops,
        batch_writes=batch_writes,
        bootstrap_items=bootstrap,
        scan_segments=segments,
        lazy_rate=lazy_rate,
        active=active,
        postgres=postgres,
    )


def _whole(value: Any, flag: str, minimum: int, maximum: int) -> int:
    """A whole number in ``minimum..maximum`` from an int or a string ("20000")."""
    try:
        number = int(str(value).strip())
    except ValueError:
        raise LoadgenUsageError(f"{flag} {value!r}: not a whole number") from None
    if not minimum <= number <= maximum:
        raise LoadgenUsageError(f"{flag} {number}: must be {minimum}..{maximum:,}")
    return number


#: what add_options registers (dest names), sent by a master to its workers
OPTION_DESTS = ("template", "keys", "key_distribution", "key_skew", "hot_key_share",
                "rate_per_user", "batch_size", "linger", "replicator", "drill", "no_verify",
                "seed", "load_shape", "drain_timeout", "verify_timeout", "settle_seconds",
                "faults", "ops", "batch_writes", "bootstrap_items", "scan_segments", "lazy_rate",
                "run_time", *(dest for dest, _ in aa.ACTIVE_OPTIONS),
                *(dest for dest, _ in pg.POSTGRES_OPTIONS))  # fmt: skip


def wire_options(parsed: Any, options: LoadOptions) -> dict[str, Any]:
    """The load options as a master resolved them, for its workers (``xrh_setup``): a
    worker's own command line holds only ``--worker`` and its master's address. The template
    travels as text (a worker may not have the master's @file)."""
    out = {dest: getattr(parsed, dest, None) for dest in OPTION_DESTS}
    out = {k: v for k, v in out.items() if v is None or isinstance(v, str | int | float | bool)}
    out["template"] = options.template_text
    return out


def public_dict(options: LoadOptions) -> dict[str, Any]:
    """What the run's config.json records about the load (no compiled objects)."""
    return {
        "template": options.template_text,
        "keys": options.keyspace.size,
        "key_distribution": options.keyspace.distribution,
        "key_skew": options.keyspace.skew,
        "hot_key_share": options.keyspace.hot_share,
        "rate_per_user": options.rate_per_user,
        "batch_size": options.batch_size,
        "linger_s": options.linger_s,
        "replicator": options.replicator,
        "verify": options.verify,
        "seed": options.seed,
        "load_shape": options.load_shape,
        "faults": options.faults,
        "settle_seconds": options.settle_s,
        "drill": options.drill.name if options.drill else None,
        **(
            {"ops": ops_text(options.ops), "batch_writes": options.batch_writes,
             "bootstrap_items": options.bootstrap_items, "scan_segments": options.scan_segments}
            if options.pipeline == "dynamodb" else {}
        ),
        **(
            {"ops": ops_text(options.ops), "lazy_rate": options.lazy_rate}
            if options.pipeline == "action-log" else {}
        ),
        **aa.active_public(options.pipeline, options.ops, options.active),
        **pg.postgres_public(options.pipeline, options.postgres),
    }  # fmt: skip
