"""Reading the run's ledger.sqlite into verify's store, for either pipeline.

The ledger is opened read-only; what the rows are copied into differs (stream attempts into
:class:`verify.store.Store`, table writes into :class:`verify.tables.store.TableStore`), the
rules do not: no ledger is a note (the regions are still compared), an unreadable one or one
not marked complete (``ledger_meta.complete``) is a reason the verdict cannot be ``valid``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from xrh.contracts import LEDGER_COMPLETE_KEY


def load_ledger_file(
    path: Path, notes: list[str], copy_rows: Callable[[sqlite3.Connection], int], *,
    target: str, absent: str,
) -> str | None:  # fmt: skip
    """Copy the ledger at ``path`` with ``copy_rows`` (given the open ledger, returns how many
    attempts it copied); a reason when it is unreadable or incomplete, else None.

    ``target`` names what the attempts were at ("stream s"), ``absent`` says what was compared
    without a ledger; both go into ``notes``."""
    if not path.exists():
        notes.append(f"no ledger.sqlite: {absent}")
        return None
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = copy_rows(db)
            meta = db.execute(
                "SELECT value FROM ledger_meta WHERE name = ?", (LEDGER_COMPLETE_KEY,)
            ).fetchone()
        finally:
            db.close()
    except sqlite3.Error as exc:
        return f"ledger {path} could not be read ({exc}): verdict unknown"
    notes.append(f"ledger: {rows} write attempts at {target}")
    if meta is None or meta[0] != "1":
        return f"ledger {path} is not marked complete (ledger_meta.complete != '1')"
    return None
