"""Injected faults: the ``--faults`` spec, seeded decisions, and the ``faults.jsonl`` log.

moto never throttles, never fails part of a batch and never loses an answer; AWS does all three,
and a replicator that has only met moto has never been tested. The embedded endpoint injects
them on purpose (:mod:`xrh.endpoint.fault_injection` applies the decisions made here). This
module is pure: no moto, no HTTP; randomness is passed in.

Spec (``xrh endpoint --faults SPEC``, the locustfile's ``--faults``, or ``XRH_FAULTS`` when the
flag is absent): a comma-separated list of ``REGION:Operation:kind=value``.

- ``REGION`` is ``a`` or ``b`` (the harness's two regions);
- ``Operation`` is an API name as AWS spells it (``PutRecords``, ``GetRecords``, ``PutItem``,
  ``BatchWriteItem``, ``Query``, ``DescribeStream``, ``PutObject``, ...) or ``*`` for every one;
- ``kind=value``:

  =================  ======================================================================
  ``partial=P``      PutRecords: each entry fails with ProvisionedThroughputExceededException
                     with probability P and is not written (the answer stays aligned with the
                     request, FailedRecordCount counts it). BatchWriteItem: each item is left
                     unwritten and returned in UnprocessedItems with probability P. Only these
                     two operations (or ``*``, which then means them).
  ``throttle=P``     the request is refused, not carried out, with the service's throttling
                     error: Kinesis ProvisionedThroughputExceededException (HTTP 400) on the
                     data plane (PutRecord(s), GetRecords, GetShardIterator) and
                     LimitExceededException on the control plane, as AWS does; DynamoDB
                     ProvisionedThroughputExceededException on data-plane calls and
                     ThrottlingException on control-plane calls; DynamoDB Streams
                     LimitExceededException; S3 SlowDown (HTTP 503).
  ``error=P``        HTTP 500, not carried out: Kinesis InternalFailure, DynamoDB (and Streams)
                     InternalServerError, S3 InternalError.
  ``latency=MS``     the answer (whatever it is) comes MS milliseconds late; the request is
                     carried out first, so a client that times out does not know the outcome.
  ``lost-answer=P``  the request IS carried out, then the connection is dropped without any
                     answer: the caller sees a connection error and cannot know the outcome.
  =================  ======================================================================

  Probabilities are in 0..1 (0 never, 1 always, exactly); latency is 0..600000 ms.

Example: ``a:PutRecords:partial=0.05,b:PutRecords:throttle=0.01,a:*:latency=20``.

When several rules match one request, for each kind the rule naming the operation wins over a
``*`` rule; the same region, operation and kind twice is a mistake. The kinds are then decided
in a fixed order: latency (always applies), throttle, then error (either stops the request:
nothing is carried out and nothing else is drawn), then lost-answer, then partial (per entry).
A request can thus be delayed, partly failed and lose its answer at once. Decisions come from a
random source seeded with ``--seed`` and the region letter, so regions A and B draw differently
and the same seed replays the same decisions for the same sequence of requests.

Log: each injected fault is one JSON line appended to ``faults.jsonl`` (in the run directory)::

    {"at_ms": 1700000000123, "side": "a", "region": "us-east-1", "service": "kinesis",
     "operation": "PutRecords", "kind": "partial", "value": 0.05, "entries": 3}

``entries`` (partial only) is how many entries or items were failed. Both regions' servers may
append to the same file: each line is one ``os.write`` on an ``O_APPEND`` descriptor, so lines
never interleave. :func:`read_fault_log` counts them for reports.

At runtime (drills), each embedded server takes ``POST /_xrh/faults`` with JSON
``{"spec": "..." | null, "seed": 7 | null, "log": "/path/faults.jsonl"}`` (``null`` spec: no
faults; absent or ``null`` log: keep the current one, ``""``: stop logging) and answers
``GET /_xrh/faults`` with its current spec, seed, log and counts of faults injected since the
spec was last set. Use :meth:`xrh.endpoint.EmbeddedEndpoint.set_faults` rather than calling it
by hand. ``/moto-api/`` (health checks) and the admin path are never faulted.
"""

from __future__ import annotations

import enum
import json
import math
import os
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xrh.errors import UsageError

FAULTS_FILE = "faults.jsonl"
FAULTS_ENV = "XRH_FAULTS"
SIDES = ("a", "b")
ANY_OPERATION = "*"
BATCH_OPERATIONS = frozenset({"PutRecords", "BatchWriteItem"})
MAX_LATENCY_MS = 600_000.0

_OPERATION_RE = re.compile(r"^[A-Z][A-Za-z0-9]*$")


class FaultKind(enum.Enum):
    LATENCY = "latency"
    THROTTLE = "throttle"
    ERROR = "error"
    LOST_ANSWER = "lost-answer"
    PARTIAL = "partial"

    @property
    def is_probability(self) -> bool:
        return self is not FaultKind.LATENCY


# The order kinds are decided in (module docstring): throttle and error stop the request.
DECISION_ORDER = (
    FaultKind.LATENCY,
    FaultKind.THROTTLE,
    FaultKind.ERROR,
    FaultKind.LOST_ANSWER,
    FaultKind.PARTIAL,
)
STOPPING_KINDS = frozenset({FaultKind.THROTTLE, FaultKind.ERROR})


@dataclass(frozen=True, slots=True)
class FaultRule:
    region: str  # "a" or "b"
    operation: str  # an API name or "*"
    kind: FaultKind
    value: float  # a probability, or milliseconds for latency

    def matches(self, operation: str) -> bool:
        return self.operation == ANY_OPERATION or self.operation == operation

    def item(self) -> str:
        """The rule as a spec item (``a:PutRecords:partial=0.05``)."""
        return f"{self.region}:{self.operation}:{self.kind.value}={_number_text(self.value)}"


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """A validated spec: the rules in the order given."""

    rules: tuple[FaultRule, ...]

    @property
    def spec(self) -> str:
        return ",".join(rule.item() for rule in self.rules)

    def for_side(self, side: str) -> tuple[FaultRule, ...]:
        return tuple(rule for rule in self.rules if rule.region == side)


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def parse_faults(spec: str | None, *, source: str = "--faults") -> FaultPlan | None:
    """Validate ``spec``; ``None`` when it is empty (no faults).

    Raises :class:`UsageError` with one line naming ``source``, the offending item and why.
    """
    if spec is None or not spec.strip():
        return None
    rules: list[FaultRule] = []
    seen: set[tuple[str, str, FaultKind]] = set()
    for raw in spec.split(","):
        item = raw.strip()
        rule = _parse_item(item, source)
        key = (rule.region, rule.operation, rule.kind)
        if key in seen:
            raise UsageError(
                f"{source} {item!r}: {rule.kind.value} for {rule.region}:{rule.operation} "
                "is given twice"
            )
        seen.add(key)
        rules.append(rule)
    return FaultPlan(tuple(rules))


def _parse_item(item: str, source: str) -> FaultRule:
    def bad(why: str) -> UsageError:
        return UsageError(f"{source} {item!r}: {why}")

    if not item:
        raise bad("empty item (two commas in a row, or a comma at an end)")
    parts = item.split(":")
    if len(parts) != 3:
        raise bad("expected REGION:Operation:kind=value (for example a:PutRecords:partial=0.05)")
    region, operation, setting = (p.strip() for p in parts)
    region = region.lower()
    if region not in SIDES:
        raise bad(f"region must be a or b, not {region!r}")
    if operation != ANY_OPERATION and not _OPERATION_RE.match(operation):
        raise bad(
            f"operation must be an API name (PutRecords, GetItem, ...) or *, not {operation!r}"
        )
    name, eq, text = setting.partition("=")
    if not eq:
        raise bad("expected kind=value after the operation (for example partial=0.05)")
    try:
        kind = FaultKind(name.strip().lower())
    except ValueError:
        kinds = ", ".join(k.value for k in FaultKind)
        raise bad(f"unknown kind {name.strip()!r}; choose one of {kinds}") from None
    try:
        value = float(text.strip())
    except ValueError:
        raise bad(f"{kind.value} needs a number, not {text.strip()!r}") from None
    if not math.isfinite(value):
        raise bad(f"{kind.value} needs a finite number")
    if kind.is_probability and not 0.0 <= value <= 1.0:
        raise bad("probability must be in 0..1")
    if kind is FaultKind.LATENCY and not 0.0 <= value <= MAX_LATENCY_MS:
        raise bad(f"latency must be 0..{int(MAX_LATENCY_MS)} milliseconds")
    if kind is FaultKind.PARTIAL and operation not in BATCH_OPERATIONS | {ANY_OPERATION}:
        raise bad("partial applies to PutRecords and BatchWriteItem only (or *)")
    return FaultRule(region, operation, kind, value)


# --------------------------------------------------------------------------- decisions


@dataclass(frozen=True, slots=True)
class Fired:
    """One fault that fired: the rule, and for partial how many entries it failed."""

    rule: FaultRule
    entries: int | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do to one request. ``stop`` is THROTTLE or ERROR (not carried out) or None;
    ``failed`` holds the indices of the entries a partial fault fails."""

    latency_ms: float = 0.0
    stop: FaultKind | None = None
    lost_answer: bool = False
    failed: tuple[int, ...] = ()
    fired: tuple[Fired, ...] = field(default=())


def seeded_random(seed: int | None, side: str) -> random.Random:
    """The random source of one region: ``seed`` combined with the region letter, so A and B
    draw differently; unseeded (system entropy) when ``seed`` is None."""
    if seed is None:
        return random.Random()  # noqa: S311 - fault injection, not cryptography
    return random.Random(f"xrh-faults:{seed}:{side}")  # noqa: S311


class FaultDecider:
    """Decides, per request, which of one region's rules fire. Thread-safe (one lock around the
    random source); the rules that apply to an operation are resolved once and cached."""

    def __init__(self, plan: FaultPlan, side: str, rng: random.Random) -> None:
        self.side = side
        self._rules = plan.for_side(side)
        self._rng = rng
        self._lock = threading.Lock()
        self._cache: dict[str, Mapping[FaultKind, FaultRule]] = {}

    def rules_for(self, operation: str) -> Mapping[FaultKind, FaultRule]:
        """For each kind, the rule that applies to ``operation`` (exact name over ``*``)."""
        found = self._cache.get(operation)
        if found is None:
            chosen: dict[FaultKind, FaultRule] = {}
            for rule in self._rules:
                if not rule.matches(operation):
                    continue
                if rule.kind is FaultKind.PARTIAL and operation not in BATCH_OPERATIONS:
                    continue
                current = chosen.get(rule.kind)
                if current is None or current.operation == ANY_OPERATION:
                    chosen[rule.kind] = rule
            found = {kind: chosen[kind] for kind in DECISION_ORDER if kind in chosen}
            self._cache[operation] = found
        return found

    def applies(self, operation: str) -> bool:
        return bool(self.rules_for(operation))

    def wants_entries(self, operation: str) -> bool:
        """True when a partial rule applies: the caller must count the request's entries."""
        return FaultKind.PARTIAL in self.rules_for(operation)

    def decide(self, operation: str, entries: int = 0) -> Decision | None:
        """Draw the faults for one request of ``entries`` entries; None when nothing fires."""
        rules = self.rules_for(operation)
        if not rules:
            return None
        fired: list[Fired] = []
        latency = 0.0
        stop: FaultKind | None = None
        lost = False
        failed: tuple[int, ...] = ()
        with self._lock:
            draw = self._rng.random
            for kind, rule in rules.items():
                if kind is FaultKind.LATENCY:
                    if rule.value > 0:
                        latency = rule.value
                        fired.append(Fired(rule))
                elif kind in STOPPING_KINDS:
                    if _fires(rule.value, draw):
                        stop = kind
                        fired.append(Fired(rule))
                        break
                elif kind is FaultKind.LOST_ANSWER:
                    lost = _fires(rule.value, draw)
                    if lost:
                        fired.append(Fired(rule))
                elif kind is FaultKind.PARTIAL and entries > 0 and rule.value > 0:
                    failed = tuple(i for i in range(entries) if _fires(rule.value, draw))
                    if failed:
                        fired.append(Fired(rule, len(failed)))
        if not fired:
            return None
        return Decision(latency, stop, lost, failed, tuple(fired))


def _fires(probability: float, draw: Any) -> bool:
    """Exact at the ends: 0 never (and draws nothing), 1 always (random() < 1 holds)."""
    if probability <= 0.0:
        return False
    return bool(draw() < probability)


# --------------------------------------------------------------------------- the log


def fault_event(
    fired: Fired, *, side: str, region: str, service: str, operation: str, at_ms: int | None = None
) -> dict[str, Any]:
    """One log line's content (DESIGN.md's ``faults.jsonl``)."""
    rule = fired.rule
    value: float | int = int(rule.value) if rule.value.is_integer() else rule.value
    event: dict[str, Any] = {
        "at_ms": int(time.time() * 1000) if at_ms is None else at_ms,
        "side": side,
        "region": region,
        "service": service,
        "operation": operation,
        "kind": rule.kind.value,
        "value": value,
    }
    if fired.entries is not None:
        event["entries"] = fired.entries
    return event


class FaultLog:
    """Appends JSON lines to one file; safe across threads and processes.

    Each line is a single ``os.write`` on an ``O_APPEND`` descriptor (POSIX appends each write
    atomically at the end of the file), so two servers sharing the file never interleave. A
    lock keeps a concurrent :meth:`close` from freeing the descriptor under a writer.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._lock = threading.Lock()

    def append(self, event: Mapping[str, Any]) -> None:
        line = (json.dumps(event, separators=(",", ":")) + "\n").encode()
        with self._lock:
            if self._fd is not None:
                os.write(self._fd, line)

    def close(self) -> None:
        with self._lock:
            fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def read_fault_log(path: Path | str) -> dict[str, Any]:
    """Count the faults in a ``faults.jsonl``: in total, by kind, by side, by operation, and
    the entries failed by partial faults. A missing file means no faults; a line that cannot be
    read (a torn last line) is counted under ``unreadable_lines``, never raised."""
    by_kind: Counter[str] = Counter()
    by_side: Counter[str] = Counter()
    by_operation: Counter[str] = Counter()
    partial_entries = 0
    unreadable = 0
    try:
        with open(path, "rb") as handle:
            for raw in handle:
                if not raw.strip():
                    continue
                try:
                    event = json.loads(raw)
                    kind = str(event["kind"])
                except (ValueError, KeyError, TypeError):
                    unreadable += 1
                    continue
                by_kind[kind] += 1
                by_side[str(event.get("side"))] += 1
                by_operation[str(event.get("operation"))] += 1
                if kind == FaultKind.PARTIAL.value:
                    entries = event.get("entries")
                    partial_entries += entries if isinstance(entries, int) else 0
    except FileNotFoundError:
        pass
    return {
        "total": sum(by_kind.values()),
        "by_kind": dict(sorted(by_kind.items())),
        "by_side": dict(sorted(by_side.items())),
        "by_operation": dict(sorted(by_operation.items())),
        "partial_entries": partial_entries,
        "unreadable_lines": unreadable,
    }
