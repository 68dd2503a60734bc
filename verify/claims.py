"""Watermark claims, observed rather than taken on the replicator's word.

A replicator publishes "region B holds every record committed by W" in the target region's
checkpoint table (``xrh.contracts``: the ``#watermark`` row of its direction's scope). The
reference replicator also logs each claim in ``claims.jsonl``, but a judge that reads only what
the judged writes proves nothing: a replicator that publishes W before copying, and logs
nothing, must be caught too. So the checkpoint table itself is sampled, by the orchestrator
all through a run and by verify while it reads, and every new value is appended to
``observed-claims.jsonl`` with two times:

- ``seen_at_ms`` (H): when the look that found it returned; the claim was in force by then;
- ``since_ms`` (L): when the previous look that did not find it began (the value was set in
  between); the first look of all has L = H.

:mod:`verify.watermarks` holds each one to: every record of that direction with commit <= W
that reached its source by L was in the target by H. Both times err towards the replicator
(L early, H late), so a claim is never called ahead because of when it was looked at.

Claims are scoped by direction: A -> B (the row with scope ``kinesis:{stream}:{region A}`` in
B's table) and B -> A after a failover; a ``claims.jsonl`` line for another stream or another
pair of regions is counted and skipped.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from verify.kinesis_reader import error_code, is_connection_error
from xrh.config import HarnessConfig, Side
from xrh.contracts import WATERMARK_SHARD_ID, WatermarkClaim, checkpoint_scope, iso_ms
from xrh.resources import ResourceNames

OBSERVED_ORIGIN = "checkpoint-table"
LOGGED_ORIGIN = "claims.jsonl"


@dataclass(frozen=True, slots=True)
class Direction:
    """One replication direction: records written to ``source`` copied to the other side."""

    source: Side
    source_region: str
    target_region: str
    scope: str

    @property
    def target(self) -> Side:
        return self.source.other

    @property
    def label(self) -> str:
        return f"{self.source.value} -> {self.target.value}"


def directions(config: HarnessConfig, stream: str) -> list[Direction]:
    out = []
    for side in (Side.A, Side.B):
        source, target = config.region(side), config.region(side.other)
        out.append(
            Direction(side, source, target, checkpoint_scope(config.pipeline, stream, source))
        )
    return out


@dataclass(frozen=True, slots=True)
class ObservedClaim:
    seen_at_ms: int
    since_ms: int
    watermark_ms: int
    stream: str
    source_region: str
    target_region: str
    observer: str

    def to_line(self) -> str:
        payload = asdict(self)
        payload.update(seen_at=iso_ms(self.seen_at_ms), watermark=iso_ms(self.watermark_ms))
        return json.dumps(payload, sort_keys=True) + "\n"

    @classmethod
    def from_line(cls, line: str) -> ObservedClaim:
        raw = json.loads(line)
        return cls(
            int(raw["seen_at_ms"]), int(raw["since_ms"]), int(raw["watermark_ms"]),
            str(raw["stream"]), str(raw["source_region"]), str(raw["target_region"]),
            str(raw.get("observer", "?")),
        )  # fmt: skip


def read_observed(path: Path) -> tuple[list[ObservedClaim], int]:
    """Every parseable line of an observed-claims log, and the number of bad lines."""
    return _read_lines(path, ObservedClaim.from_line)


def read_logged(path: Path) -> tuple[list[WatermarkClaim], int]:
    """The replicator's own claims.jsonl: parseable claims and the number of bad lines."""
    return _read_lines(path, WatermarkClaim.from_line)


def _read_lines(path: Path, parse: Callable[[str], Any]) -> tuple[list[Any], int]:
    if not path.exists():
        return [], 0
    parsed, bad = [], 0
    with path.open() as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                parsed.append(parse(line))
            except (ValueError, KeyError, TypeError):
                bad += 1
    return parsed, bad


class CheckpointSampler:
    """Looks at both directions' watermark rows; files each new value it sees.

    ``clients`` has ``client(service, side)`` (:class:`xrh.aws.AwsClients`). A look that
    fails (throttled, endpoint down) is skipped and counted; the next one's L stays at the
    last look that succeeded. Safe to call from one thread at a time."""

    def __init__(
        self,
        clients: Any,
        config: HarnessConfig,
        stream: str,
        *,
        log_path: Path | None,
        observer: str,
        wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self._clients = clients
        self._stream = stream
        self._table = ResourceNames(config.prefix).checkpoint_table
        self._log_path = log_path
        self._observer = observer
        self._wall_ms = wall_ms
        self._directions = directions(config, stream)
        # per direction: (last watermark seen, start of the last successful look)
        self._last: dict[Side, tuple[int | None, int | None]] = dict.fromkeys(Side, (None, None))
        self._absent: set[Side] = set()
        self.looks = 0
        self.failed_looks = 0
        self.observed: list[ObservedClaim] = []
        if log_path is not None:
            self._resume(log_path)

    def _resume(self, path: Path) -> None:
        """Continue another observer's log: a value it saw is not new; a different value was
        set after its first sighting of the old one (lenient L, as said above)."""
        by_region = {d.source_region: d.source for d in self._directions}
        for claim in read_observed(path)[0]:
            side = by_region.get(claim.source_region)
            if claim.stream == self._stream and side is not None:
                self._last[side] = (claim.watermark_ms, claim.seen_at_ms)

    def look(self) -> list[ObservedClaim]:
        """One look at every direction; returns (and logs) the claims new since the last."""
        new: list[ObservedClaim] = []
        for direction in self._directions:
            if direction.source in self._absent:
                continue
            started = self._wall_ms()
            try:
                watermark = self._read(direction)
            except _Absent:
                self._absent.add(direction.source)
                continue
            except Exception as exc:  # noqa: BLE001 - a failed look is skipped, not fatal
                if is_connection_error(exc) or error_code(exc) is not None:
                    self.failed_looks += 1
                    continue
                raise
            finished = self._wall_ms()
            self.looks += 1
            previous, last_look = self._last[direction.source]
            self._last[direction.source] = (
                watermark if watermark is not None else previous,
                started,
            )
            if watermark is None or watermark == previous:
                continue
            since = last_look if last_look is not None else finished
            new.append(
                ObservedClaim(
                    finished, min(since, finished), watermark, self._stream,
                    direction.source_region, direction.target_region, self._observer,
                )
            )  # fmt: skip
        if new:
            self.observed.extend(new)
            if self._log_path is not None:
                with self._log_path.open("a") as handle:
                    handle.write("".join(c.to_line() for c in new))
        return new

    def _read(self, direction: Direction) -> int | None:
        try:
            item = (
                self._clients.client("dynamodb", direction.target)
                .get_item(
                    TableName=self._table,
                    Key={"scope": {"S": direction.scope}, "shardId": {"S": WATERMARK_SHARD_ID}},
                    ConsistentRead=True,
                )
                .get("Item")
            )
        except Exception as exc:
            if error_code(exc) == "ResourceNotFoundException":
                raise _Absent from exc
            raise
        if not item or "watermarkMs" not in item:
            return None
        return int(item["watermarkMs"]["N"])

    def run(self, stop: threading.Event, interval_s: float = 0.5) -> None:
        """Look every ``interval_s`` until ``stop`` is set (the orchestrator's thread)."""
        while not stop.is_set():
            self.look()
            stop.wait(interval_s)

    def summary(self) -> dict[str, Any]:
        return {
            "observer": self._observer,
            "looks": self.looks,
            "failed_looks": self.failed_looks,
            "claims_seen": len(self.observed),
            "no_checkpoint_table_in": sorted(d.target.value for d in self._directions
                                             if d.source in self._absent),
        }  # fmt: skip


class _Absent(Exception):
    """No checkpoint table in that region (a replicator that keeps none)."""


def side_of_claim(config: HarnessConfig, source_region: str, target_region: str) -> str | None:
    """``'a'`` or ``'b'`` for a claim of one of this run's directions, else None."""
    for side in Side:
        if (source_region, target_region) == (config.region(side), config.region(side.other)):
            return side.value
    return None


def scoped_rows(
    config: HarnessConfig, stream: str, claims: Iterable[WatermarkClaim | ObservedClaim]
) -> tuple[list[tuple], int]:
    """Store rows (L, H, W, replicator id, source side) of the claims of this stream's two
    directions, and how many were of other streams or regions."""
    rows, other = [], 0
    for claim in claims:
        side = side_of_claim(config, claim.source_region, claim.target_region)
        if claim.stream != stream or side is None:
            other += 1
            continue
        if isinstance(claim, ObservedClaim):
            rows.append((claim.since_ms, claim.seen_at_ms, claim.watermark_ms,
                         f"seen by {claim.observer}", side))  # fmt: skip
        else:
            rows.append((claim.claimed_at_ms, claim.claimed_at_ms, claim.watermark_ms,
                         claim.replicator_id, side))  # fmt: skip
    return rows, other
