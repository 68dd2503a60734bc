"""The active-active checks, over a settled :class:`~verify.active.store.ActiveStore`.

- diverged: a key whose logical values differ between the tables after settling (the digest
  comparison's ``diff``), with both values and stamps.
- per key and table against the ledger's winner (:mod:`verify.active.winners`): stale (an
  older version while the other table holds the winner), lost (no table holds an acknowledged
  winning put or update), resurrected (the winner is a delete, a table holds a live item),
  phantom (a stamp no acknowledged or unknown write of the key has). Keys no ledger row names
  are foreign (counted) unless their item's trace names this run.
- ping_pong: from both staging streams (:func:`verify.active.staging.ping_pong`).
- conflicts: pairs of acknowledged writes (that did something: a stamp) of one key from different regions invoked within
  :data:`CONFLICT_WINDOW_MS` (faster than replication could order them); resolved are the
  conflicted keys on which both tables hold the winner.

Examples name the key, both regions' items (or stamps of tombstones), the winner's trace, op,
region and stamp, and the stamps found.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from verify.actions.items import pk_of, plain_item
from verify.active.staging import ping_pong
from verify.active.store import ActiveStore
from verify.active.winners import Version, Winner, classify, judge_key
from verify.checks import EXAMPLES, Anomaly
from verify.model import ANOMALY_KINDS
from verify.tables.store import chunk_of
from xrh.active_active import Stamp

CONFLICT_WINDOW_MS = 1000
JUDGED = ("lost", "phantom", "stale", "diverged", "resurrected", "ping_pong")
KINDS = (*ANOMALY_KINDS, "resurrected", "ping_pong")
NOT_APPLICABLE = {
    "duplicated": "a table holds one version per key: a change applied twice is the same item",
    "reordered": "last-writer-wins makes order irrelevant: the winner is checked instead",
    "checkpoint_ahead": "the active-active replicator publishes no watermark",
    "looped": "see ping_pong: changes forwarded back or forwarded twice",
}
REASONS = {
    "lost": "{n} key(s) whose acknowledged winning write neither table holds",
    "phantom": "{n} item(s) in a table stamped as no acknowledged or unknown ledger write",
    "stale": "{n} item(s) in a table older than the winner the other table holds",
    "diverged": "{n} key(s) hold different values in the two tables",
    "resurrected": "{n} item(s) in a table are live although the key's winning write deleted it",
    "ping_pong": "{n} change(s) forwarded back to their origin or forwarded twice",
}

_KEYS = """
WITH k AS (SELECT key FROM stamps UNION SELECT key FROM winners)
SELECT k.key, w.ts, w.region, w.n, w.ops, w.trace, a.ts, a.region, a.trace, a.tomb,
       b.ts, b.region, b.trace, b.tomb, EXISTS (SELECT 1 FROM aa_ledger AS l WHERE l.key = k.key)
FROM k LEFT JOIN winners AS w ON w.key = k.key
LEFT JOIN stamps AS a ON a.side = 'a' AND a.key = k.key
LEFT JOIN stamps AS b ON b.side = 'b' AND b.key = k.key ORDER BY k.key
"""
_STATUS = """SELECT CASE WHEN SUM(status = 'ok') THEN 'ok' WHEN SUM(status = 'unknown')
    THEN 'unknown' WHEN COUNT(*) THEN 'fail' END FROM aa_ledger
WHERE key = ? AND commit_ts = ? AND region = ?
  AND (CASE WHEN ? THEN op = 'delete' ELSE op != 'delete' AND (? IS NULL OR trace = ?) END)"""
_BODY = "SELECT body FROM items_{side} WHERE chunk = ? AND key = ?"
_W = CONFLICT_WINDOW_MS
_PAIRS = f"""FROM aa_ledger AS x JOIN aa_ledger AS y ON y.key = x.key AND y.region > x.region
    AND y.invoked_at BETWEEN x.invoked_at - {_W} AND x.invoked_at + {_W}
WHERE x.status = 'ok' AND y.status = 'ok' AND x.commit_ts IS NOT NULL
    AND y.commit_ts IS NOT NULL"""


@dataclass
class Tally:
    limit: int = EXAMPLES
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(JUDGED, 0))
    examples: dict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: {k: [] for k in JUDGED}
    )

    def add(self, kind: str, example: dict[str, Any] | None) -> None:
        self.counts[kind] += 1
        if example is not None and len(self.examples[kind]) < self.limit:
            self.examples[kind].append(example)

    def wants(self, kind: str) -> bool:
        return len(self.examples[kind]) < self.limit


@dataclass(frozen=True, slots=True)
class Judgement:
    anomalies: dict[str, Anomaly]
    details: dict[str, Any] = field(default_factory=dict)


def _stamp(ts: Any, region: Any) -> Stamp | None:
    return None if ts is None else Stamp(int(ts), str(region))


# A DeleteItem whose answer was lost has no stamp in the ledger (the item it removed never came
# back); its tombstone is stamped one past the version it removed, by its region: a tombstone
# (t, R) may be it when R made such a delete and some write of the key was stamped t - 1.
_UNKNOWN_DELETE = """SELECT EXISTS (SELECT 1 FROM aa_ledger WHERE key = ? AND region = ?
    AND op = 'delete' AND status = 'unknown' AND commit_ts IS NULL)
  AND EXISTS (SELECT 1 FROM aa_ledger WHERE key = ? AND commit_ts = ?
    AND status IN ('ok', 'unknown'))"""


def _status_of(db: Any, key: str) -> Any:
    def status_of(stamp: Stamp, tomb: bool, trace: str | None) -> str | None:
        found = db.execute(_STATUS, (key, stamp.ts, stamp.region, int(tomb), trace, trace)
                           ).fetchone()[0]  # fmt: skip
        if found is None and tomb:
            args = (key, stamp.region, key, stamp.ts - 1)
            if db.execute(_UNKNOWN_DELETE, args).fetchone()[0]:
                return "unknown"
        return found

    return status_of


class _Judge:
    def __init__(self, store: ActiveStore, regions: dict[str, str], own_prefix: str | None,
                 limit: int) -> None:  # fmt: skip
        self.store, self.db, self.regions, self.own_prefix = store, store.db, regions, own_prefix
        self.tally = Tally(limit)
        self.foreign = 0
        self.keys = 0
        self.classes: dict[str, int] = {}

    def version_json(self, side: str, key: str, v: Version) -> dict[str, Any]:
        """What a table holds of a key, as a person reads it."""
        if v.stamp is None:
            return {"region": self.regions[side], "item": None, "stamp": None}
        item = None
        if not v.tomb:
            row = self.db.execute(_BODY.format(side=side),
                                  (chunk_of(key, self.store.chunks), key)).fetchone()  # fmt: skip
            item = plain_item(row[0]) if row else None
        return {"region": self.regions[side], "item": item, "tombstone": v.tomb,
                "stamp": v.stamp.to_json(), "trace": v.trace}  # fmt: skip

    def example(self, key: str, w: Winner | None, versions: dict[str, Version], **extra: Any
                ) -> dict[str, Any]:  # fmt: skip
        winner = None
        if w is not None:
            winner = {"stamp": w.stamp.to_json(), "region": w.stamp.region,
                      "ops": sorted(w.ops), "writes": w.writes, "trace": w.trace}  # fmt: skip
        return {"key": {"pk": pk_of(key)}, **extra, "winner": winner,
                "A": self.version_json("a", key, versions["a"]),
                "B": self.version_json("b", key, versions["b"]),
                "stamps_found": {s.upper(): (v.stamp.to_json() if v.stamp else None)
                                 for s, v in versions.items()}}  # fmt: skip

    def run(self, conflicted: set[str]) -> int:
        """Every key against its winner; how many conflicted keys ended resolved."""
        resolved = 0
        for row in self.db.execute(_KEYS).fetchall():
            key, in_ledger = row[0], row[14]
            self.keys += 1
            w = None
            if row[1] is not None:
                w = Winner(Stamp(row[1], row[2]), row[3], frozenset(row[4].split(",")), row[5])
            versions = {"a": Version(_stamp(row[6], row[7]), bool(row[9]), row[8]),
                        "b": Version(_stamp(row[10], row[11]), bool(row[13]), row[12])}  # fmt: skip
            if not in_ledger:
                traces = [v.trace for v in versions.values() if v.stamp is not None]
                if self.own_prefix is None or not any(
                    t and t.startswith(self.own_prefix) for t in traces
                ):
                    self.foreign += 1
                    continue
                for side, v in versions.items():
                    if v.stamp is not None and self.tally.wants("phantom"):
                        self.tally.add("phantom", self.example(key, None, versions,
                                       table=side.upper(), reason="key_not_in_ledger",
                                       explanation="an item of this run on a key no ledger "
                                       "write touched"))  # fmt: skip
                    elif v.stamp is not None:
                        self.tally.add("phantom", None)
                continue
            status_of = _status_of(self.db, key)
            classes = {s.upper(): classify(v, w, status_of) for s, v in versions.items()}
            for cls in classes.values():
                self.classes[cls] = self.classes.get(cls, 0) + 1
            verdict = judge_key(classes, w)
            if key in conflicted and verdict.settled:
                resolved += 1
            for kind, side in verdict.anomalies:
                ex = None
                if self.tally.wants(kind):
                    ex = self.example(key, w, versions, table=side, reason=classes.get(side),
                                      explanation=_explain(kind, side))  # fmt: skip
                self.tally.add(kind, ex)
        return resolved

    def diverged(self) -> None:
        for (key,) in self.db.execute("SELECT key FROM diff ORDER BY key").fetchall():
            ex = None
            if self.tally.wants("diverged"):
                versions = {}
                for side in ("a", "b"):
                    r = self.db.execute("SELECT ts, region, trace, tomb FROM stamps "
                                        "WHERE side = ? AND key = ?", (side, key)).fetchone()  # fmt: skip
                    versions[side] = Version(_stamp(r[0], r[1]) if r else None,
                                             bool(r[3]) if r else False, r[2] if r else None)  # fmt: skip
                w = self.db.execute("SELECT ts, region, n, ops, trace FROM winners WHERE key = ?",
                                    (key,)).fetchone()  # fmt: skip
                winner = None if w is None else Winner(
                    Stamp(w[0], w[1]), w[2], frozenset(w[3].split(",")), w[4])  # fmt: skip
                ex = self.example(key, winner, versions, explanation="the two tables hold "
                                  "different values for the key after settling")  # fmt: skip
            self.tally.add("diverged", ex)


def _explain(kind: str, side: str | None) -> str:
    return {
        "lost": "neither table holds the key's acknowledged winning write",
        "stale": f"table {side} holds an older version than the winner the other table holds",
        "resurrected": f"the key's winning write is a delete and table {side} holds a live item",
        "phantom": f"table {side} holds a version stamped as no acknowledged or unknown write "
        "of the key",
    }[kind]


def conflicts(db: Any, limit: int = EXAMPLES) -> tuple[dict[str, Any], set[str]]:
    """Concurrent writes of one key from both regions: the figures and the conflicted keys."""
    pairs = db.execute(f"SELECT COUNT(*) {_PAIRS}").fetchone()[0]
    keys = {r[0] for r in db.execute(f"SELECT DISTINCT x.key {_PAIRS}")}
    examples = [
        {"key": {"pk": pk_of(k)}, "writes": [
            {"trace": t, "region": r, "op": o, "stamp": [c, r], "invoked_at": i}
            for t, r, o, c, i in ((tx, rx, ox, cx, ix), (ty, ry, oy, cy, iy))]}
        for k, tx, rx, ox, cx, ix, ty, ry, oy, cy, iy in db.execute(
            "SELECT x.key, x.trace, x.region, x.op, x.commit_ts, x.invoked_at, y.trace, "
            f"y.region, y.op, y.commit_ts, y.invoked_at {_PAIRS} ORDER BY x.key LIMIT ?",
            (limit,))
    ]  # fmt: skip
    return {"window_ms": CONFLICT_WINDOW_MS, "generated": pairs, "conflicted_keys": len(keys),
            "examples": examples}, keys  # fmt: skip


def judge(store: ActiveStore, regions: dict[str, str], *, own_prefix: str | None = None,
          limit: int = EXAMPLES) -> Judgement:  # fmt: skip
    """All checks over a settled store. ``regions``: side ("a", "b") -> AWS region."""
    judge_ = _Judge(store, regions, own_prefix, limit)
    judge_.diverged()
    found_conflicts, conflicted = conflicts(store.db, limit)
    with_ledger = store.has_ledger()
    if with_ledger:
        found_conflicts["resolved"] = judge_.run(conflicted)
    loops = ping_pong(store.db, regions, limit)
    anomalies: dict[str, Anomaly] = {}
    for kind in KINDS:
        if kind in NOT_APPLICABLE:
            anomalies[kind] = Anomaly(kind, 0, (), {"note": "does not apply to the "
                                      f"active-active pipeline: {NOT_APPLICABLE[kind]}"})  # fmt: skip
        elif kind == "ping_pong":
            anomalies[kind] = Anomaly(kind, loops["count"], tuple(loops["examples"]),
                                      {**loops["reasons"], "resends": loops["resends"]})  # fmt: skip
        else:
            anomalies[kind] = Anomaly(kind, judge_.tally.counts[kind],
                                      tuple(judge_.tally.examples[kind]))  # fmt: skip
    details = {
        "keys_judged": judge_.keys, "foreign_keys": judge_.foreign,
        "versions_by_class": judge_.classes, "winners": store.scalar(
            "SELECT COUNT(*) FROM winners"), "conflicts": found_conflicts,
        "resends": loops["resends"], "ledger": with_ledger,
    }  # fmt: skip
    return Judgement(anomalies, details)
