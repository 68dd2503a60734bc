"""Collecting what verify judges into the store: the ledger, the claims (logged and observed),
both regions' streams (followed until the target settles) and the dead letters. Everything that talks to AWS is here;
:mod:`verify.runner` decides what to collect and reconciles afterwards.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from verify.checks import SOURCE_CUTOFF, missing_from_target
from verify.claims import (
    LOGGED_ORIGIN,
    OBSERVED_ORIGIN,
    CheckpointSampler,
    read_logged,
    read_observed,
    scoped_rows,
)
from verify.dead_letters import read_bucket
from verify.errors import EndpointUnreachable
from verify.follower import StreamFollower, catch_up
from verify.kinesis_reader import error_code, is_connection_error
from verify.ledger_file import load_ledger_file
from verify.model import StoreSide
from verify.store import Store
from xrh import runs
from xrh.config import HarnessConfig, Side
from xrh.resources import ResourceNames

DEFAULT_SETTLE_S = 30.0
SETTLE_POLL_S = 1.0


def settle_stopped_by(now: float, last_progress: float, settle_s: float,
                      settle_deadline: float) -> str | None:  # fmt: skip
    """Why settling stops at ``now`` (the deadline before the lack of progress), or None to
    read again: the rule of both pipelines' settle loops, and the words their reports use."""
    if now >= settle_deadline:
        return "verify timeout"
    if now - last_progress >= settle_s:
        return f"no progress for {settle_s:g} s"
    return None


def settle_keys(
    settle: dict[str, Any],
    differing: Callable[[], int],
    reread: Callable[[], list[str]],
    *,
    settle_s: float,
    settle_deadline: float,
    poll_s: float,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    bar: Callable[..., Any] | None = None,
) -> list[str]:
    """The table pipelines' settle loop: while keys differ, wait ``poll_s``, read them again
    (``reread``, which may give reasons to stop) and count again, until none differ, none
    stopped differing for ``settle_s`` or the deadline came. Fills ``settle`` (passes,
    waited_s, stopped_by, differing_after_settle)."""
    now = differing()
    waited_from = last_progress = clock()
    reasons: list[str] = []
    while now:
        stopped_by = settle_stopped_by(clock(), last_progress, settle_s, settle_deadline)
        if stopped_by is not None:
            settle["stopped_by"] = stopped_by
            break
        if bar:
            bar(description=f"waiting for the target: {now} key(s) differ (gives up "
                            f"after {settle_s:g} s without progress)")  # fmt: skip
        sleep(min(poll_s, max(0.0, settle_deadline - clock())))
        reasons = reread()
        if reasons:
            break
        settle["passes"] += 1
        fewer = differing()
        if fewer < now:
            last_progress = clock()
        now = fewer
    settle["waited_s"] = round(clock() - waited_from, 3) if settle["passes"] else 0.0
    settle["differing_after_settle"] = now
    return reasons


@contextmanager
def _progress(enabled: bool) -> Iterator[Callable[[str], Callable[[int], None]]]:
    """Yields ``task(label) -> advance(n)``; a rich bar per stream when enabled."""
    if not enabled:
        yield lambda label: lambda n: None
        return
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TextColumn("{task.completed} records"),
        TimeElapsedColumn(), transient=True,
    ) as bar:  # fmt: skip

        def task(label: str) -> Callable[[int], None]:
            task_id = bar.add_task(label, total=None)
            return lambda n: bar.advance(task_id, n)

        yield task


def load_ledger(
    store: Store, path: Path, stream: str, notes: list[str], region_b: str | None = None
) -> str | None:
    """Import the ledger; returns a reason when it is incomplete (verdict unknown)."""
    return load_ledger_file(
        path, notes, lambda ledger: store.import_ledger(ledger, stream, region_b),
        target=f"stream {stream}", absent="source and target compared without a ledger",
    )  # fmt: skip


def load_claims(
    store: Store, run_path: Path, config: HarnessConfig, stream: str, details: dict[str, Any]
) -> None:
    """The replicator's own claims.jsonl and the observed-claims log of the run (the
    orchestrator's looks at the checkpoint table), scoped to this stream's two directions."""
    logged, bad_logged = read_logged(run_path / runs.CLAIMS_FILE)
    observed, bad_observed = read_observed(run_path / runs.OBSERVED_CLAIMS_FILE)
    logged_rows, logged_other = scoped_rows(config, stream, logged)
    observed_rows, observed_other = scoped_rows(config, stream, observed)
    store.add_observed_claims(logged_rows, LOGGED_ORIGIN)
    store.add_observed_claims(observed_rows, OBSERVED_ORIGIN)
    details["claims"] = {
        "file": (run_path / runs.CLAIMS_FILE).exists(),
        "logged_by_replicator": len(logged_rows),
        "unparseable_lines": bad_logged + bad_observed,
        "other_streams_or_regions": logged_other + observed_other,
        "observed_in_checkpoint_table": len(observed_rows),
    }


def _missing(store: Store) -> int:
    store.flush()
    return missing_from_target(store.db)


def read_regions(
    store: Store,
    config: HarnessConfig,
    stream: str,
    details: dict[str, Any],
    clients: Any,
    timeout_s: float,
    progress: bool,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    wall_ms: Callable[[], int],
    *,
    settle_s: float = DEFAULT_SETTLE_S,
    poll_s: float = SETTLE_POLL_S,
    run_path: Path | None = None,
) -> list[str]:
    """Fill the store from both regions and return reasons the evidence is incomplete.

    Both streams are followed concurrently (:mod:`verify.follower`). Then verify settles: while
    a record the target must hold (acknowledged, or in its source before verify began) is not
    there, it reads again, for as long as the target makes progress, giving up after
    ``settle_s`` without any, or at the ``timeout_s`` deadline; only then is what is missing
    lost. A last pass reads both sources once more, so a record that landed in a source while
    the other region was read is matched, not phantom. Every pass first looks at the
    checkpoint tables, so the claims verify files itself bracket what the target held."""
    if clients is None:
        from xrh.aws import AwsClients

        # A pool per region's client: one connection per shard reader, room for a reshard to
        # twice as many shards, and a few for the checkpoint looks and dead letters.
        clients = AwsClients(
            config, max_attempts=4, connect_timeout=3.0, read_timeout=30.0,
            max_pool_connections=4 * config.shards + 16,
        )  # fmt: skip
    deadline = clock() + timeout_s
    log_path = run_path / runs.OBSERVED_CLAIMS_FILE if run_path is not None else None
    sampler = CheckpointSampler(clients, config, stream, log_path=log_path, observer="verify",
                                wall_ms=wall_ms)  # fmt: skip
    followers = [
        (StreamFollower(clients.client("kinesis", side), stream, label=side.value, clock=clock,
                        sleep=sleep),
         lambda record, _region=side.value: store.add_read(_region, record))
        for side in (Side.A, Side.B)
    ]  # fmt: skip
    store.set_meta(SOURCE_CUTOFF, str(wall_ms()))
    timings: dict[str, Any] = {}
    details["timings_s"] = timings
    t0 = time.perf_counter()
    settle: dict[str, Any] = {"settle_seconds": settle_s, "passes": 0, "waited_s": 0.0}
    details["settle"] = settle
    with _progress(progress) as task:
        bars = {f.label: task(f"reading {f.where()}") for f, _ in followers}

        def read_pass() -> list[str]:
            sampler.look()
            try:
                stats = catch_up(followers, deadline=deadline, clock=clock,
                                 on_progress=lambda label, n: bars[label](n))  # fmt: skip
            except EndpointUnreachable as exc:
                return [str(exc)]
            except Exception as exc:
                if error_code(exc) == "ResourceNotFoundException":
                    return [f"stream {stream} not found: {exc}"]
                raise
            settle["passes"] += 1
            return [
                f"stream {stream} in region {label.upper()} not read to its end within "
                f"{timeout_s:g} s (unfinished shards: {', '.join(s.unfinished)})"
                for label, s in stats.items() if not s.complete
            ]  # fmt: skip

        reasons = read_pass()
        timings["first_read"] = round(time.perf_counter() - t0, 3)
        if not reasons:
            # Before settling: a record the replicator dead-lettered is not waited for.
            try:
                details["dead_letters"] = read_dead_letters(store, clients, config)
            except EndpointUnreachable as exc:
                reasons = [str(exc)]
        missing = _missing(store) if not reasons else 0
        settle["missing_after_first_read"] = missing
        waited_from = last_progress = clock()
        copies = store.counts[StoreSide.TARGET]
        # Settling ends early enough to leave the last pass a fifth of the time budget.
        settle_deadline = deadline - max(2.0, 0.2 * timeout_s)
        if missing and not reasons:  # say what the wait is for, not only a spinner
            task(f"waiting for the target: {missing} record(s) it must hold are not there yet "
                 f"(gives up after {settle_s:g} s without progress)")  # fmt: skip
        while missing and not reasons:
            stopped_by = settle_stopped_by(clock(), last_progress, settle_s, settle_deadline)
            if stopped_by is not None:
                settle["stopped_by"] = stopped_by
                break
            sleep(min(poll_s, max(0.0, settle_deadline - clock())))
            reasons = read_pass()
            now_missing = _missing(store)
            if now_missing < missing or store.counts[StoreSide.TARGET] > copies:
                last_progress = clock()
            missing, copies = now_missing, store.counts[StoreSide.TARGET]
        settle["waited_s"] = round(clock() - waited_from, 3) if settle["passes"] > 1 else 0.0
        settle["missing_after_settle"] = missing
        if not reasons:
            reasons = read_pass()  # the sources once more: nothing the target got is phantom
    store.flush()
    timings["read"] = round(time.perf_counter() - t0, 3)
    details["reads"] = {f.label: f.stats.to_json() for f, _ in followers}
    details["claims_sampling"] = sampler.summary()
    store.add_observed_claims(scoped_rows(config, stream, sampler.observed)[0], OBSERVED_ORIGIN)
    return reasons


def read_dead_letters(store: Store, clients: Any, config: HarnessConfig) -> dict[str, Any]:
    names = ResourceNames(config.prefix)
    count, listed = 0, []
    for side in (Side.A, Side.B):
        bucket = names.dead_letter_bucket(config.region(side))
        try:
            for record in read_bucket(clients.client("s3", side), bucket):
                count += 1
                store.add_dead_letter(
                    record.partition_key, record.data, record.reason, record.location
                )
                if len(listed) < 100:
                    listed.append(
                        {
                            "partition_key": record.partition_key,
                            "reason": record.reason,
                            "location": record.location,
                            "data": None
                            if record.data is None
                            else record.data[:500].decode(errors="replace"),
                        }
                    )
        except Exception as exc:
            if is_connection_error(exc):
                raise EndpointUnreachable(
                    f"region {side.name} endpoint not reachable reading {bucket}: {exc}"
                ) from exc
            raise
    return {"count": count, "records": listed, "listed": len(listed)}
