"""What the bootstrap copy reports: its progress while it runs, its result, and the warning
when it took longer than the stream keeps records (pure data; no copying here)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from replicator.core.bootstrap_ownership import BootstrapRow


class Outcome(enum.Enum):
    COPIED = "copied"  # this process completed the copy (or the last part of it)
    ALREADY_COMPLETE = "already complete"  # the state row said complete
    SKIPPED_LIVE = "skipped: live apply already ran"  # checkpoints without a bootstrap
    STOPPED = "stopped"  # request_stop() before the copy completed


@dataclass(frozen=True, slots=True)
class BootstrapProgress:
    items_copied: int  # every segment's acknowledged items (other owners' included)
    estimated_total: int | None
    rate: float  # items/s copied by this process since it took the copy
    segments_done: int
    segments: int
    elapsed_s: float
    owner: str | None = None  # who copies (another process while this one waits)
    waiting: bool = False


@dataclass(slots=True)
class BootstrapResult:
    outcome: Outcome
    row: BootstrapRow | None = None
    items_copied: int = 0  # total in the state row (all owners)
    copied_here: int = 0  # by this process
    dead: int = 0  # dead-lettered by this process
    copy_seconds: float | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def open_gate(self) -> bool:
        """Live apply may start."""
        return self.outcome is not Outcome.STOPPED

    @property
    def items_per_s(self) -> float | None:
        if not self.copy_seconds:
            return None
        return self.items_copied / self.copy_seconds


def retention_warning(table: str, seconds: float, retention_ms: int, margin_ms: int) -> str | None:
    """Why a copy that took ``seconds`` may have lost changes, or None when it was quick enough:
    records written early in it may have been trimmed before live apply replays them."""
    if seconds * 1000 <= retention_ms - margin_ms:
        return None
    return (
        f"the bootstrap copy of {table} took {seconds:.0f} s, longer than the stream's "
        f"retention ({retention_ms / 3_600_000:g} h) minus a margin of {margin_ms / 3_600_000:g} "
        "h: changes made early in the copy may have been trimmed from the stream before live "
        "apply reads them, so the target MAY MISS CHANGES; compare the tables (xrh verify "
        "--table) or copy again into an empty target"
    )
