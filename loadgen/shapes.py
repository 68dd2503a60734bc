"""The ``--load-shape`` curves: how many users, spawned how fast, at a moment of the run.

Plain arithmetic, apart from Locust's :class:`~locust.LoadTestShape` glue
(:class:`loadgen.locust_users.XrhShape`), so it is tested without starting Locust.
"""

from __future__ import annotations


def shape_at(shape: str, t: float, users: int, rate: float,
             run_time: float | None) -> tuple[int, float] | None:  # fmt: skip
    """(users, spawn rate) ``t`` seconds into the run, or None once ``run_time`` is over.

    steady: ``users`` throughout; step: a quarter more every quarter of the run time; spike: a
    quarter of the users, and all of them in the middle fifth of each period (the run time,
    or 60 s without one)."""
    if run_time and t >= run_time:
        return None
    period = float(run_time or 60)
    if shape == "step":
        level = min(4, int(t / (period / 4)) + 1)
        return max(1, users * level // 4), rate
    if shape == "spike":
        phase = (t % period) / period
        return (users, max(rate, users)) if 0.4 <= phase < 0.6 else (max(1, users // 4), rate)
    return users, rate
