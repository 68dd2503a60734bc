"""A complete read of an ``action-log`` run, kept so it can be judged again without the regions
(``xrh verify --run-dir`` when the run's endpoint is gone, or ``--from-store``).

A live verify (:func:`verify.actions.run.run_action_verify`) that read the actions stream to
its end, folded it, and scanned and settled both regions' tables, with no reason to call its
evidence incomplete, marks its three stores as one read (:func:`mark_complete`): each item
store (``verify-items-a.sqlite``, ``verify-items-b.sqlite``) gets the read's id and time, then
``verify.sqlite`` gets the same id, the judge's options, the report's details and, last, the
"read complete" marker the other pipelines write (:data:`verify.runner.READ_COMPLETE`, what
:func:`verify.runner.stored_read_at` and ``xrh verify`` look for). A verify cut short leaves no
marker: every live verify starts its stores afresh.

:func:`incomplete_reason` says, reading the stores only, why they cannot be judged again (no
marker, an item store missing or from another read), or None; :func:`open_stored` opens them
as they are, for the same judge over the same rows, so the verdict is the live one's.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from verify.actions.compare import SIDES, store_path
from verify.actions.store import ActionStore
from verify.runner import READ_COMPLETE, READ_DETAILS
from verify.tables.store import TableStore
from xrh import runs
from xrh.config import Side

READ_ID = "read_id"
JUDGE_OPTIONS = "judge_options"


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def mark_complete(
    store: ActionStore, item_stores: dict[Side, TableStore], details: dict[str, Any],
    options: dict[str, Any],
) -> str:  # fmt: skip
    """Mark the stores as one complete read (the action store's marker last); its time."""
    read_id, read_at = uuid.uuid4().hex, _now_iso()
    for item_store in item_stores.values():
        item_store.set_meta(READ_ID, read_id)
        item_store.set_meta(READ_COMPLETE, read_at)
    store.set_meta(READ_ID, read_id)
    store.set_meta(JUDGE_OPTIONS, json.dumps(options))
    store.set_meta(READ_DETAILS, json.dumps(details, default=str))
    store.set_meta(READ_COMPLETE, read_at)
    return read_at


def _meta(path: Path, names: tuple[str, ...]) -> dict[str, str | None]:
    """Values of ``names`` in a store's meta table, read only (sqlite3.Error if unreadable)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        found = dict(
            db.execute(
                f"SELECT name, value FROM meta WHERE name IN ({','.join('?' * len(names))})",
                names,
            ).fetchall()
        )
    finally:
        db.close()
    return {name: found.get(name) for name in names}


def incomplete_reason(run_path: Path) -> str | None:
    """Why this run's stores hold no complete read to judge again, or None when they do."""
    path = Path(run_path) / runs.VERIFY_STORE_FILE
    if not path.exists():
        return f"no {runs.VERIFY_STORE_FILE}: no verify of this run read its log and tables"
    try:
        meta = _meta(path, (READ_COMPLETE, READ_ID, JUDGE_OPTIONS, READ_DETAILS))
    except sqlite3.Error as exc:
        return f"{runs.VERIFY_STORE_FILE} cannot be read ({exc})"
    if meta[READ_COMPLETE] is None:
        return (
            f"{runs.VERIFY_STORE_FILE} holds no complete read: the last verify of this run did "
            "not finish reading the actions stream and both tables"
        )
    if meta[READ_ID] is None or meta[JUDGE_OPTIONS] is None or meta[READ_DETAILS] is None:
        return f"{runs.VERIFY_STORE_FILE} is marked complete but lacks what judging needs"
    for side in SIDES:
        items = store_path(Path(run_path), side)
        if not items.exists():
            return f"no {items.name}: region {side.name}'s table as read is not stored"
        try:
            read_id = _meta(items, (READ_ID,))[READ_ID]
        except sqlite3.Error as exc:
            return f"{items.name} cannot be read ({exc})"
        if read_id != meta[READ_ID]:
            return (
                f"{items.name} is not from the read {runs.VERIFY_STORE_FILE} holds (a verify "
                "cut short after it, or a file from another read)"
            )
    return None


class Stored:
    """The stores of a complete read, opened as they are (never afresh); close after use."""

    def __init__(self, run_path: Path) -> None:
        self.store = ActionStore(Path(run_path) / runs.VERIFY_STORE_FILE, fresh=False)
        self.items: dict[Side, TableStore] = {}
        try:
            for side in SIDES:
                self.items[side] = TableStore(store_path(Path(run_path), side), fresh=False)
        except BaseException:
            self.close()
            raise
        self.read_at = self.store.get_meta(READ_COMPLETE) or "?"
        self.options: dict[str, Any] = json.loads(self.store.get_meta(JUDGE_OPTIONS) or "{}")
        self.details: dict[str, Any] = json.loads(self.store.get_meta(READ_DETAILS) or "{}")

    def close(self) -> None:
        for item_store in self.items.values():
            item_store.close()
        self.store.close()
