"""Each key's last-writer-wins winner from the ledger, and each table's version held against it.

The winner of a key is the maximum (timestamp, region) among its *acknowledged* writes (a
delete's stamp is :func:`xrh.active_active.delete_stamp`'s, as the ledger records it; a delete
whose DeleteItem found nothing has no stamp and did nothing). Several writes may share that
stamp (two writes in one region in one millisecond, or one second with whole-second stamps):
any of them is the winner, so a table's item is matched to one of them by its ``trace``; a
tombstone carries no trace and matches any delete among them. Writes whose outcome is
``unknown`` may have happened: a version stamped as one of them (above the acknowledged
maximum, or sharing it) is allowed to be there; a version stamped as no ledger write, or as a
failed one, is a phantom.

:func:`classify` says what one table holds of a key; :func:`judge_key` turns both tables'
classes into anomalies (lost once per key, the others per table). Pure: the ledger is asked
through the passed ``status_of``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from xrh.active_active import Stamp

WINNER = "winner"  # holds the acknowledged winner (or an unknown write sharing its stamp)
UNKNOWN_WIN = "unknown_win"  # holds a write of unknown outcome stamped above the winner
DELETED = "deleted"  # the winner is a delete and the table holds none or a tombstone
OLDER = "older"  # holds an earlier write (or nothing) while the winner is a live item
PHANTOM = "phantom"  # holds a stamp no (acknowledged or unknown) ledger write has
RESURRECTED = "resurrected"  # the winner is a delete and the table holds an older live item
UNJUDGED = "unjudged"  # no acknowledged write of the key: nothing to hold it against
HOLDS = frozenset({WINNER, UNKNOWN_WIN})
SETTLED = frozenset({WINNER, UNKNOWN_WIN, DELETED})


@dataclass(frozen=True, slots=True)
class Winner:
    """A key's winning stamp; ``ops`` of the acknowledged writes that share it."""

    stamp: Stamp
    writes: int
    ops: frozenset[str]
    trace: str | None = None

    @property
    def live(self) -> bool:
        """A put or update is among the winners: the key must exist."""
        return bool(self.ops - {"delete"})

    @property
    def delete(self) -> bool:
        return "delete" in self.ops


@dataclass(frozen=True, slots=True)
class Version:
    """What one table holds of a key: ``stamp`` None when it holds nothing."""

    stamp: Stamp | None
    tomb: bool = False
    trace: str | None = None


#: ``status_of(stamp, tombstone, trace)``: the best status ('ok' before 'unknown' before
#: 'fail') of a ledger write of the key with that stamp that could have left this version (a
#: delete for a tombstone; for an item, a put or update with its trace), or None.
StatusOf = Callable[[Stamp, bool, "str | None"], "str | None"]


def classify(version: Version, winner: Winner | None, status_of: StatusOf) -> str:
    """One table's version of a key against the key's winner (None: no acknowledged write)."""
    if version.stamp is None:
        if winner is None:
            return UNJUDGED
        return DELETED if winner.delete else OLDER
    if (
        winner is not None
        and version.stamp == winner.stamp
        and not version.tomb
        and winner.writes == 1
        and winner.live
        and version.trace is not None
        and version.trace == winner.trace
    ):
        return WINNER  # the common case, without asking the ledger
    status = status_of(version.stamp, version.tomb, version.trace)
    if status not in ("ok", "unknown"):
        return PHANTOM
    if winner is None:
        return UNJUDGED
    if version.stamp > winner.stamp:
        return UNKNOWN_WIN if status == "unknown" else PHANTOM
    if version.stamp == winner.stamp:
        return WINNER
    if winner.live:
        return OLDER
    return DELETED if version.tomb else RESURRECTED


@dataclass(frozen=True, slots=True)
class KeyJudgement:
    """Anomalies of one key: (kind, side) pairs, side None for the key as a whole."""

    anomalies: tuple[tuple[str, str | None], ...]
    settled: bool  # both tables hold the winner (or what may have beaten it)


def judge_key(classes: dict[str, str], winner: Winner | None) -> KeyJudgement:
    """``classes``: side ("A", "B") -> :func:`classify`'s answer for that table."""
    found: list[tuple[str, str | None]] = []
    for side, cls in classes.items():
        if cls in (PHANTOM, RESURRECTED):
            found.append((cls, side))
    if winner is not None and winner.live:
        holders = [side for side, cls in classes.items() if cls in HOLDS]
        if not holders and not any(cls == DELETED for cls in classes.values()):
            found.append(("lost", None))
        elif holders:
            found += [("stale", side) for side, cls in classes.items() if cls == OLDER]
    settled = winner is not None and all(cls in SETTLED for cls in classes.values())
    return KeyJudgement(tuple(found), settled)
