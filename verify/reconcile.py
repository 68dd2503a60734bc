"""Run every check over a finalized store and decide the verdict.

Verdict rules (Jepsen's valid / invalid / unknown): if the evidence is incomplete in a way that
could hide or invent an anomaly (a stream not read to its end, an endpoint down) the verdict is
``unknown``; otherwise any anomaly makes it ``invalid`` (duplicates only with
``fatal_duplicates``); otherwise an incomplete ledger makes it ``unknown``; else ``valid``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field

from verify.checks import (
    EXAMPLES,
    Anomaly,
    check_diverged,
    check_duplicated,
    check_looped,
    check_lost,
    check_phantom,
    check_reordered,
    check_stale,
    counts,
    foreign_details,
    tally,
    verified_watermark,
)
from verify.lag import LagResult, compute_lag
from verify.model import ANOMALY_KINDS, Verdict
from verify.watermarks import check_checkpoint_ahead


@dataclass(frozen=True, slots=True)
class Reconciliation:
    anomalies: dict[str, Anomaly]
    counts: dict[str, int]
    lag: LagResult
    watermark_claimed_ms: int | None
    watermark_verified_ms: int | None
    foreign: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    reasons: list[str] = field(default_factory=list)


def reconcile(
    db: sqlite3.Connection, *, tolerance_ms: int = 0, limit: int = EXAMPLES
) -> Reconciliation:
    tallied = tally(db)  # one scan for every count; the checks only fetch examples
    found = [
        check_lost(db, limit, tallied),
        check_duplicated(db, limit, tallied),
        check_reordered(db, limit, tallied),
        check_phantom(db, limit, tallied),
        check_stale(db, limit),
        check_diverged(db, limit, tallied),
        check_checkpoint_ahead(db, tolerance_ms, limit),
        check_looped(db, limit, tallied),
    ]
    anomalies = {a.kind: a for a in found}
    assert tuple(anomalies) == ANOMALY_KINDS
    # The newest A -> B claim by when it was in force (as verify.watermarks picks each
    # direction's newest).
    claimed = db.execute(
        "SELECT watermark_ms FROM claims WHERE source_side = 'a' "
        "ORDER BY seen_at_ms DESC, watermark_ms DESC LIMIT 1"
    ).fetchone()
    return Reconciliation(
        anomalies,
        counts(db, tallied),
        compute_lag(db),
        None if claimed is None else int(claimed[0]),
        verified_watermark(db, tallied),
        foreign_details(tallied),
    )


#: the reasons of a stream pipeline, whose anomalies are about records
RECORD_REASONS = {
    "lost": "{n} record(s) acknowledged or in the source are missing from the target",
    "duplicated": "{n} record(s) duplicated in the target (fatal by --fatal-duplicates)",
    "reordered": "{n} record(s) have their last target copy out of their key's source order",
    "phantom": "{n} record(s) in the target are in neither the source nor the ledger",
    "stale": "{n} key(s) end on a different record in the target than in the source",
    "diverged": "{n} record(s) differ between source and target",
    "checkpoint_ahead": "{n} watermark claim(s) said the target held records it did not",
    "looped": "{n} record(s) came back into the region they were written to",
}


def decide(
    anomalies: dict[str, Anomaly],
    *,
    fatal_duplicates: bool = False,
    incomplete: list[str] | None = None,
    ledger_incomplete: str | None = None,
    wording: Mapping[str, str] | None = None,
) -> Decision:
    """``incomplete``: reasons the evidence cannot be trusted (reads unfinished, endpoint down);
    ``wording``: how a pipeline words an anomaly kind's reason (a table pipeline's are about
    keys and items, :data:`verify.tables.checks.KEY_REASONS`), else :data:`RECORD_REASONS`."""
    if incomplete:
        return Decision(Verdict.UNKNOWN, list(incomplete))
    describe = {**RECORD_REASONS, **(wording or {})}
    reasons = [
        describe[kind].format(n=a.count)
        for kind, a in anomalies.items()
        if a.count and (kind != "duplicated" or fatal_duplicates)
    ]
    if reasons:
        if ledger_incomplete:
            reasons.append(ledger_incomplete)
        return Decision(Verdict.INVALID, reasons)
    if ledger_incomplete:
        return Decision(Verdict.UNKNOWN, [ledger_incomplete])
    return Decision(Verdict.VALID, [])
