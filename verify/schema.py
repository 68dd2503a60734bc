"""The layout of ``verify.sqlite`` and the upserts that fold rows into it as they are read.

One row per identity in ``ids`` holds what the source (``s_*``), the target (``t_*``) and the
ledger (``l_*``) know of that record, so every check is a scan of one table instead of joins,
and whatever can be known the moment both sides of a record are in (lag, the record's source
position beside its target position) is recorded then, by triggers, while the reads go on:

- ``lag_hist`` (source shard, lag ms) and ``commit_hist`` (lag from commit ms): counts, for the
  percentiles; ``lag_time`` per source-arrival second: records, lag sum and max;
- ``rates`` per side and arrival second: copies, the first and last arrival ms and the newest
  commit timestamp;
- partial indexes kept up to date by every upsert: ``ids_order`` (target key, last target copy,
  source position) gives the order check its rows already sorted, ``ids_odd`` the rows that
  can hold an anomaly, ``ids_status`` the ledger statuses, ``ids_times`` (source arrival,
  target arrival, commit) the narrow rows the watermark sweep reads;
- ``order_suspects``: the keys whose order the check must examine (see the trigger).

The first copy stored of each side keeps its columns (readers deliver each shard in order, but
read the shards concurrently: when copies of one record sit in a parent shard and in its child,
the child's may be stored first; the last-copy positions, which order a parent before its
child by their generation bits, never depend on the storing order). Later copies count, flag a
difference in data or partition key and move the side's ``*_last_ord`` position (the order
check compares the target's last copies with the source's last copies: a producer's resend
leaves a2, a1, a2 in the source itself).

Direction and ownership, per identity:

- ``origin`` is the region the record was written to (``'a'`` or ``'b'``, from the ledger's
  region; ``'a'`` for records no ledger row names). Copies read in the origin region are the
  source side, copies read in the other region the target side, so a record written to B after
  a failover and lost on its way to A is lost like any other. Positions (``*_ord``) are only
  comparable within one origin: order and staleness are judged per (origin, partition key).
- ``own`` is 1 for this run's records (a ledger row, or a trace that names this run; every
  record when there is no ledger). Other runs' records and records nobody in this run wrote are
  foreign: counted in the details, never an anomaly, and never used to hide one.
- ``l_copies``: the ledger attempts that may have written a copy (``ok`` or ``unknown``); more
  source copies than that came back from the other region (a loop).
"""

from __future__ import annotations

SIDE_COLUMNS = ("pk", "shard", "seq", "ord", "commit", "arr", "dhash")

# Rows that can hold an anomaly (one side missing, more than one copy, copies that differ):
# the partial index ids_odd lists them, so the checks' counts never scan the clean majority.
ODD = (
    "NOT (s_n IS 1 AND t_n IS 1 AND s_diff IS 0 AND t_diff IS 0 AND t_dhash IS s_dhash"
    " AND t_pk IS s_pk)"
)

SCHEMA_TEMPLATE = """
CREATE TABLE ids (
    ident INTEGER PRIMARY KEY, trace TEXT, key TEXT, own INTEGER, origin TEXT,
    s_n INTEGER, s_pk TEXT, s_shard TEXT, s_seq TEXT, s_ord INTEGER, s_commit INTEGER,
    s_arr INTEGER, s_dhash INTEGER, s_diff INTEGER, s_last_ord INTEGER,
    t_n INTEGER, t_pk TEXT, t_shard TEXT, t_seq TEXT, t_ord INTEGER, t_commit INTEGER,
    t_arr INTEGER, t_dhash INTEGER, t_diff INTEGER,
    t_last_ord INTEGER, t_last_shard TEXT, t_last_seq TEXT,
    l_status TEXT, l_pk TEXT, l_key TEXT, l_commit INTEGER, l_shard TEXT, l_seq TEXT,
    l_attempts INTEGER, l_copies INTEGER
);
CREATE INDEX ids_order ON ids (origin, t_pk, t_last_ord, s_last_ord, own)
    WHERE s_n IS NOT NULL AND t_n IS NOT NULL;
CREATE INDEX ids_odd ON ids (ident) WHERE {ODD};
CREATE INDEX ids_status ON ids (l_status) WHERE l_status IS NOT NULL;
CREATE INDEX ids_times ON ids (s_arr, t_arr, s_commit, origin, own) WHERE s_n IS NOT NULL;
CREATE INDEX ids_foreign ON ids (ident) WHERE own IS NOT 1;
CREATE TABLE order_suspects (pk TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE src (ident INTEGER NOT NULL, shard TEXT NOT NULL, seq TEXT NOT NULL,
    arrival_ms INTEGER NOT NULL);
CREATE TABLE tgt (ident INTEGER NOT NULL, shard TEXT NOT NULL, seq TEXT NOT NULL,
    arrival_ms INTEGER NOT NULL);
CREATE TABLE lag_hist (shard TEXT NOT NULL, v INTEGER NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (shard, v)) WITHOUT ROWID;
CREATE TABLE commit_hist (v INTEGER PRIMARY KEY, n INTEGER NOT NULL);
CREATE TABLE lag_time (sec INTEGER PRIMARY KEY, n INTEGER NOT NULL, total INTEGER NOT NULL,
    mx INTEGER NOT NULL);
CREATE TABLE rates (side TEXT NOT NULL, sec INTEGER NOT NULL, n INTEGER NOT NULL,
    lo INTEGER NOT NULL, hi INTEGER NOT NULL, commit_max INTEGER,
    PRIMARY KEY (side, sec)) WITHOUT ROWID;
-- A claim (L, H, W) for records of one origin: every record of that origin with commit <= W
-- that reached its source by L was in the target by H. A claim the replicator logged is
-- (t, t, W); one verify saw in the target's checkpoint table at H had appeared after the
-- previous look, L (or at H itself when nothing was seen before).
CREATE TABLE claims (
    id INTEGER PRIMARY KEY, claimed_at_ms INTEGER NOT NULL, watermark_ms INTEGER NOT NULL,
    replicator_id TEXT, origin TEXT NOT NULL, seen_at_ms INTEGER NOT NULL,
    source_side TEXT NOT NULL DEFAULT 'a'
);
-- accepted: the dead letter holds the record's data and a reason that is not transient, so it
-- accounts for the record (a poison record); otherwise the record can still be lost.
CREATE TABLE dead_letters (
    ident INTEGER, trace TEXT, pk TEXT, key TEXT, reason TEXT, location TEXT NOT NULL,
    accepted INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX dead_letters_ident ON dead_letters (ident) WHERE accepted = 1;
CREATE TABLE items (side TEXT NOT NULL, key TEXT NOT NULL, item_hash INTEGER NOT NULL,
    item TEXT NOT NULL);
CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT);

-- Both sides of a record are in: its lag is known and never changes (first copies).
CREATE TRIGGER ids_paired AFTER UPDATE OF s_n, t_n ON ids
WHEN (old.s_n IS NULL OR old.t_n IS NULL) AND new.s_n IS NOT NULL AND new.t_n IS NOT NULL
BEGIN
    INSERT INTO lag_hist VALUES (new.s_shard, new.t_arr - new.s_arr, 1)
        ON CONFLICT DO UPDATE SET n = n + 1;
    INSERT INTO commit_hist SELECT new.t_arr - new.s_commit, 1 WHERE new.s_commit IS NOT NULL
        ON CONFLICT DO UPDATE SET n = n + 1;
    INSERT INTO lag_time VALUES (new.s_arr / 1000, 1, new.t_arr - new.s_arr,
                                 new.t_arr - new.s_arr)
        ON CONFLICT DO UPDATE SET n = n + 1, total = total + excluded.total,
                                  mx = MAX(mx, excluded.mx);
    -- The order check need only look at keys where this record's neighbours in (key, last
    -- copy) order are out of source order, or where copies moved (a duplicate).
    INSERT INTO order_suspects SELECT new.t_pk WHERE new.t_n > 1 OR new.s_n > 1
        OR EXISTS (SELECT 1 FROM (SELECT s_last_ord, t_last_ord FROM ids
                                  WHERE origin IS new.origin AND t_pk = new.t_pk
                                    AND t_last_ord <= new.t_last_ord
                                    AND ident != new.ident
                                    AND s_n IS NOT NULL AND t_n IS NOT NULL
                                  ORDER BY t_last_ord DESC LIMIT 1) AS p
                   WHERE p.s_last_ord > new.s_last_ord OR p.t_last_ord = new.t_last_ord)
        OR EXISTS (SELECT 1 FROM (SELECT s_last_ord, t_last_ord FROM ids
                                  WHERE origin IS new.origin AND t_pk = new.t_pk
                                    AND t_last_ord >= new.t_last_ord
                                    AND ident != new.ident
                                    AND s_n IS NOT NULL AND t_n IS NOT NULL
                                  ORDER BY t_last_ord LIMIT 1) AS q
                   WHERE q.s_last_ord < new.s_last_ord OR q.t_last_ord = new.t_last_ord)
        ON CONFLICT DO NOTHING;
END;

-- A later copy of a paired record (either side) moves it in the order: its key is a suspect.
CREATE TRIGGER ids_moved AFTER UPDATE OF s_n, t_n ON ids
WHEN old.s_n IS NOT NULL AND old.t_n IS NOT NULL
BEGIN
    INSERT INTO order_suspects VALUES (new.t_pk) ON CONFLICT DO NOTHING;
END;

-- The per-side views the tables used to be, for a person reading verify.sqlite.
CREATE VIEW src_id AS SELECT ident, s_n AS n, s_ord AS ord, s_last_ord AS last_ord, trace, key,
    own, origin, s_pk AS pk,
    s_shard AS shard, s_seq AS seq, s_commit AS commit_ts, s_arr AS arrival_ms,
    s_dhash AS dhash, s_diff AS diff FROM ids WHERE s_n IS NOT NULL;
CREATE VIEW tgt_id AS SELECT ident, t_n AS n, t_ord AS ord, t_last_ord AS last_ord, trace, key,
    own, origin,
    t_pk AS pk, t_shard AS shard, t_seq AS seq, t_commit AS commit_ts, t_arr AS arrival_ms,
    t_dhash AS dhash, t_diff AS diff FROM ids WHERE t_n IS NOT NULL;
CREATE VIEW led_id AS SELECT ident, trace, l_status AS status, l_pk AS pk, l_key AS key,
    l_commit AS commit_ts, l_shard AS shard_id, l_seq AS seq, l_attempts AS attempts,
    l_copies AS copies, origin FROM ids WHERE l_status IS NOT NULL;
"""
SCHEMA = SCHEMA_TEMPLATE.replace("{ODD}", ODD)


def dead_lettered(alias: str = "ids") -> str:
    """SQL: the record of row ``alias`` is accounted for by an accepted dead letter."""
    return (
        f"EXISTS (SELECT 1 FROM dead_letters d INDEXED BY dead_letters_ident "
        f"WHERE d.ident = {alias}.ident AND d.accepted = 1)"
    )


def upsert_side(prefix: str) -> str:
    """Parameters ?1..?12: ident, trace, key, pk, shard, seq, ord, commit_ts, arrival_ms, dhash,
    own, origin."""
    cols = [f"{prefix}_{c}" for c in SIDE_COLUMNS]
    n, diff, last = f"{prefix}_n", f"{prefix}_diff", f"{prefix}_last_ord"
    first = ",\n    ".join(
        f"{c} = CASE WHEN {n} IS NULL THEN excluded.{c} ELSE {c} END" for c in cols
    )
    insert_cols = ["ident", "trace", "key", *cols, "own", "origin", n, diff, last]
    values = [f"?{i}" for i in range(1, 13)] + ["1", "0", "?7"]
    newer = f"{n} IS NULL OR excluded.{prefix}_ord >= {last}"
    moves = f"""
    {last} = CASE WHEN {newer} THEN excluded.{prefix}_ord ELSE {last} END"""
    if prefix == "t":
        insert_cols += ["t_last_shard", "t_last_seq"]
        values += ["?5", "?6"]
        moves += f""",
    t_last_shard = CASE WHEN {newer} THEN excluded.t_shard ELSE t_last_shard END,
    t_last_seq = CASE WHEN {newer} THEN excluded.t_seq ELSE t_last_seq END"""
    # SQLite evaluates every SET expression against the old row, so the CASEs above all see
    # the same old position.
    return f"""
INSERT INTO ids ({", ".join(insert_cols)}) VALUES ({", ".join(values)})
ON CONFLICT (ident) DO UPDATE SET
    trace = COALESCE(trace, excluded.trace),
    key = COALESCE(key, excluded.key),
    own = MAX(COALESCE(own, 0), excluded.own),
    origin = COALESCE(origin, excluded.origin),
    {diff} = CASE WHEN {n} IS NULL THEN 0 ELSE ({diff} OR excluded.{prefix}_dhash != {prefix}_dhash
                  OR excluded.{prefix}_pk != {prefix}_pk) END,
    {first},{moves},
    {n} = COALESCE({n}, 0) + 1
"""


# An identity is acknowledged if any attempt was, else unknown if any was, else failed; the
# position is the acknowledged attempt's (or the first attempt's).
UPSERT_LEDGER = """
INSERT INTO ids (ident, trace, l_status, l_pk, l_key, l_commit, l_shard, l_seq, origin, own,
                 l_attempts, l_copies)
VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,1,1,?3 IN ('ok', 'unknown'))
ON CONFLICT (ident) DO UPDATE SET
    trace = COALESCE(trace, excluded.trace),
    own = 1,
    origin = COALESCE(origin, excluded.origin),
    l_copies = COALESCE(l_copies, 0) + excluded.l_copies,
    l_status = CASE WHEN l_status = 'ok' OR excluded.l_status = 'ok' THEN 'ok'
                    WHEN l_status = 'unknown' OR excluded.l_status = 'unknown' THEN 'unknown'
                    ELSE 'fail' END,
    l_pk = CASE WHEN l_attempts IS NULL THEN excluded.l_pk ELSE l_pk END,
    l_key = CASE WHEN l_attempts IS NULL THEN excluded.l_key ELSE l_key END,
    l_shard = CASE WHEN l_attempts IS NULL OR excluded.l_status = 'ok'
                   THEN excluded.l_shard ELSE l_shard END,
    l_seq = CASE WHEN l_attempts IS NULL OR excluded.l_status = 'ok'
                 THEN excluded.l_seq ELSE l_seq END,
    l_commit = COALESCE(l_commit, excluded.l_commit),
    l_attempts = COALESCE(l_attempts, 0) + 1
"""

UPSERT_RATES = """
INSERT INTO rates VALUES (?,?,?,?,?,?)
ON CONFLICT DO UPDATE SET n = n + excluded.n, lo = MIN(lo, excluded.lo), hi = MAX(hi, excluded.hi),
    commit_max = MAX(COALESCE(commit_max, excluded.commit_max),
                     COALESCE(excluded.commit_max, commit_max))
"""
