"""What the dynamodb runner shows of the bootstrap copy: a rich bar on a terminal, else a line
every few seconds (both also as ``bootstrap_progress`` log events), and the bootstrap block of
the metrics file (items copied, copy seconds, items/s)."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

PROGRESS_LINE_S = 5.0  # a progress log line this often when stderr is not a terminal


class ProgressView:
    """The copy's progress: a rich bar on a terminal, else a line every few seconds; both also
    as ``bootstrap_progress`` log events."""

    def __init__(self, files: Any, stream: Any = None, *, tty: bool | None = None) -> None:
        self.files = files
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.last: Any = None
        self._bar: Any = None
        self._task: Any = None
        self._next_line = 0.0
        self._lock = threading.Lock()

    def __call__(self, p: Any) -> None:
        with self._lock:
            self.last = p
            now = time.monotonic()
            if self.tty:
                self._draw(p)
            if now >= self._next_line:
                self._next_line = now + PROGRESS_LINE_S
                self.files.log(
                    "bootstrap_progress", items_copied=p.items_copied,
                    estimated_items=p.estimated_total, items_per_s=round(p.rate, 1),
                    segments_done=p.segments_done, segments=p.segments, owner=p.owner,
                    waiting=p.waiting,
                )  # fmt: skip
                if not self.tty:
                    print(describe(p), file=self.stream, flush=True)

    def _draw(self, p: Any) -> None:
        if self._bar is None:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._bar = Progress(
                TextColumn("bootstrap copy"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"), TextColumn("{task.fields[note]}"),
                TimeElapsedColumn(), console=Console(file=self.stream), transient=False,
            )  # fmt: skip
            self._bar.start()
            self._task = self._bar.add_task("copy", total=None, rate="", note="")
        total = p.estimated_total
        if total is not None:
            total = max(total, p.items_copied)
        note = f"{p.segments_done}/{p.segments} segments"
        if p.waiting:
            note = f"waiting: {p.owner} copies"
        self._bar.update(
            self._task, completed=p.items_copied, total=total or None,
            rate=f"{p.rate:,.0f} items/s", note=note,
        )  # fmt: skip

    def close(self) -> None:
        with self._lock:
            if self._bar is not None:
                self._bar.stop()
                self._bar = None


def describe(p: Any) -> str:
    if p.waiting:
        return f"bootstrap: waiting while {p.owner} copies ({p.items_copied:,} items copied so far)"
    total = f" / ~{p.estimated_total:,}" if p.estimated_total else ""
    share = (
        f" ({100 * p.items_copied / p.estimated_total:.0f}%)"
        if p.estimated_total and p.items_copied <= p.estimated_total
        else ""
    )
    return (
        f"bootstrap: {p.items_copied:,}{total} items{share}, {p.rate:,.0f} items/s, "
        f"{p.segments_done}/{p.segments} segments done"
    )


def bootstrap_figures(bootstrap: Any, mode: str) -> dict[str, Any]:
    """The bootstrap block of the metrics snapshot."""
    if bootstrap is None:
        return {"mode": mode, "state": "disabled"}
    result = bootstrap.result
    progress = bootstrap.last_progress
    figures: dict[str, Any] = {
        "mode": mode,
        "state": bootstrap.state,
        "segments": bootstrap.settings.segments,
        "copied_here": bootstrap.copied_here,
        "dead_lettered_here": bootstrap.dead_here,
        "estimated_items": bootstrap.info.item_count if bootstrap.info else None,
    }
    if progress is not None:
        figures["items_copied"] = progress.items_copied
        figures["items_per_s"] = round(progress.rate, 1)
    if result is not None:
        figures["outcome"] = result.outcome.value
        if result.row is not None:
            figures["items_copied"] = result.items_copied
            figures["copy_seconds"] = result.copy_seconds
            figures["items_per_s"] = (
                None if result.items_per_s is None else round(result.items_per_s, 1)
            )
        if result.warnings:
            figures["warnings"] = result.warnings
    return figures
