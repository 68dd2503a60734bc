"""The ``active-active`` pipeline's load options: where writes go and how they conflict.

A replication that only ever sees one writer per key proves nothing about last-writer-wins, so
the load is built to collide (GitHub issue 11): writers in both regions (``--region-weights``),
a small hot set of keys every producer of every process shares (``--conflict-keys``, taken
with probability ``--conflict-share``; the rest of the writes come from the keyspace), clocks
that disagree (``--clock-skew-ms``) and stamps in whole seconds on request
(``--timestamp-resolution s``), where ties are common and a bare timestamp picks no winner.

Resolved by :func:`loadgen.options.load_options` into :class:`ActiveOptions`; given to a run of
another pipeline each of them is refused (exit 3), as the other pipelines' options are.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from loadgen.errors import LoadgenUsageError
from loadgen.item_writes import DEFAULT_OPS, ops_text, parse_ops

PIPELINE = "active-active"
SIDES = ("a", "b")
#: plain writes as applications make them; deletes often enough that tombstones matter
DEFAULT_ACTIVE_OPS = (("put", 50.0), ("update", 35.0), ("delete", 15.0))
DEFAULT_REGION_WEIGHTS = (("a", 1.0), ("b", 1.0))
DEFAULT_CONFLICT_KEYS = 50
DEFAULT_CONFLICT_SHARE = 0.5
NO_SKEW = (("a", 0), ("b", 0))
RESOLUTIONS = ("ms", "s")
MAX_SKEW_MS = 86_400_000  # a day: beyond it a clock is broken, not skewed
#: (dest, flag) of the options of this pipeline only
ACTIVE_OPTIONS = (("region_weights", "--region-weights"), ("conflict_keys", "--conflict-keys"),
                  ("conflict_share", "--conflict-share"), ("clock_skew_ms", "--clock-skew-ms"),
                  ("timestamp_resolution", "--timestamp-resolution"))  # fmt: skip


@dataclass(frozen=True, slots=True)
class ActiveOptions:
    region_weights: tuple[tuple[str, float], ...] = DEFAULT_REGION_WEIGHTS  # (side, weight)
    conflict_keys: int = DEFAULT_CONFLICT_KEYS  # the hot set: keys 0 .. conflict_keys - 1
    conflict_share: float = DEFAULT_CONFLICT_SHARE  # of writes, on the hot set
    clock_skew_ms: tuple[tuple[str, int], ...] = NO_SKEW  # (side, ms added to its clock)
    timestamp_resolution: str = "ms"

    def skew_of(self, side: str) -> int:
        return dict(self.clock_skew_ms).get(side, 0)


def add_active_options(add: Callable[..., None]) -> None:
    """Register the options through :func:`loadgen.options.add_options`'s ``add``."""
    add("--region-weights", default=None, help="active-active: share of writes per region, "
        f"by weight (default {ops_text(DEFAULT_REGION_WEIGHTS)})")  # fmt: skip
    add("--conflict-keys", default=None, help="active-active: size of the hot set of keys "
        f"(keys 0..N-1) writers of both regions share (default {DEFAULT_CONFLICT_KEYS}, at "
        "most --keys)")  # fmt: skip
    add("--conflict-share", default=None, help="active-active: share of writes on the hot set, "
        f"0..1; the rest draw from the keyspace (default {DEFAULT_CONFLICT_SHARE})")  # fmt: skip
    add("--clock-skew-ms", default=None, help="active-active: milliseconds added to a region's "
        "writers' clocks, e.g. b=+500 or a=-200,b=+500 (default none)")  # fmt: skip
    add("--timestamp-resolution", default=None, help="active-active: stamps in ms or s "
        "(whole seconds: ties are common) (default ms)")  # fmt: skip


def pipeline_ops(pipeline: str, text: Any) -> tuple[tuple[str, float], ...]:
    """``--ops`` of the run's pipeline: the action log's actions, else table writes (with this
    pipeline's default mix for active-active)."""
    if pipeline == "action-log":
        from loadgen.actions import parse_action_ops

        return parse_action_ops(text)
    return parse_ops(text, default=DEFAULT_ACTIVE_OPS if pipeline == PIPELINE else DEFAULT_OPS)


def parse_region_weights(text: Any) -> tuple[tuple[str, float], ...]:
    """``a=1,b=1`` as ((side, weight), ...); a side left out gets no writes."""
    return parse_ops(None if text is None else str(text), "--region-weights", ops=SIDES,
                     default=DEFAULT_REGION_WEIGHTS, what="region")  # fmt: skip


def parse_clock_skew(text: Any) -> tuple[tuple[str, int], ...]:
    """``b=+500`` or ``a=-200,b=+500`` as ((a, ms), (b, ms)); a side left out has none."""
    if text is None or not str(text).strip():
        return NO_SKEW
    flag = f"--clock-skew-ms {text!r}"
    skews: dict[str, int] = {}
    for part in str(text).split(","):
        side, sep, value = part.strip().partition("=")
        side = side.strip().lower()
        if not sep or side not in SIDES:
            raise LoadgenUsageError(f"{flag}: {part.strip()!r} is not REGION=MS with REGION a or "
                                    "b (e.g. b=+500)")  # fmt: skip
        if side in skews:
            raise LoadgenUsageError(f"{flag}: {side} is given twice")
        try:
            ms = int(value.strip())
        except ValueError:
            raise LoadgenUsageError(f"{flag}: the skew of {side}, {value.strip()!r}, is not a "
                                    "whole number of milliseconds") from None  # fmt: skip
        if abs(ms) > MAX_SKEW_MS:
            raise LoadgenUsageError(f"{flag}: the skew of {side} is beyond a day "
                                    f"(at most {MAX_SKEW_MS:,} ms either way)")  # fmt: skip
        skews[side] = ms
    return tuple((side, skews.get(side, 0)) for side in SIDES)


def skew_text(skews: tuple[tuple[str, int], ...]) -> str:
    return ",".join(f"{side}={ms:+d}" for side, ms in skews)


def active_options(g: Callable[..., Any], keys: int) -> ActiveOptions:
    """Resolve the options (``g(dest, default)``: the flag, else the drill's, else default);
    ``keys``: the keyspace's size, which holds the hot set."""
    raw = g("conflict_keys")
    if raw is None:  # the default never asks for more keys than the keyspace has
        hot = min(DEFAULT_CONFLICT_KEYS, keys)
    else:
        try:
            hot = int(str(raw).strip())
        except ValueError:
            raise LoadgenUsageError(f"--conflict-keys {raw!r}: not a whole number") from None
        if not 0 <= hot <= keys:
            raise LoadgenUsageError(f"--conflict-keys {hot}: the hot set is keys 0..N-1 of the "
                                    f"keyspace, so 0..{keys:,} (--keys)")  # fmt: skip
    share_text = g("conflict_share", DEFAULT_CONFLICT_SHARE)
    try:
        share = float(share_text)
    except (TypeError, ValueError):
        raise LoadgenUsageError(f"--conflict-share {share_text!r}: not a number") from None
    if not 0 <= share <= 1:
        raise LoadgenUsageError(f"--conflict-share {share}: a share, 0..1")
    resolution = str(g("timestamp_resolution", "ms")).strip().lower()
    if resolution not in RESOLUTIONS:
        raise LoadgenUsageError(f"--timestamp-resolution {g('timestamp_resolution')!r}: choose "
                                "ms or s")  # fmt: skip
    return ActiveOptions(
        region_weights=parse_region_weights(g("region_weights")),
        conflict_keys=hot,
        conflict_share=share,
        clock_skew_ms=parse_clock_skew(g("clock_skew_ms")),
        timestamp_resolution=resolution,
    )


def active_public(pipeline: str, ops: Any, options: ActiveOptions) -> dict[str, Any]:
    """What config.json records about an active-active run's load (nothing for others)."""
    if pipeline != PIPELINE:
        return {}
    return {
        "ops": ops_text(ops),
        "region_weights": ops_text(options.region_weights),
        "conflict_keys": options.conflict_keys,
        "conflict_share": options.conflict_share,
        "clock_skew_ms": skew_text(options.clock_skew_ms),
        "timestamp_resolution": options.timestamp_resolution,
    }
