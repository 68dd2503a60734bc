"""The --load-shape curves, without Locust."""

from __future__ import annotations

from loadgen.shapes import shape_at


def test_steady_keeps_the_users_until_the_run_time_ends() -> None:
    assert shape_at("steady", 0, 8, 2.0, 100) == (8, 2.0)
    assert shape_at("steady", 99.9, 8, 2.0, 100) == (8, 2.0)
    assert shape_at("steady", 100, 8, 2.0, 100) is None
    assert shape_at("steady", 1e6, 8, 2.0, None) == (8, 2.0)


def test_step_adds_a_quarter_every_quarter() -> None:
    assert [shape_at("step", t, 8, 1.0, 100) for t in (0, 25, 50, 99)] == [
        (2, 1.0),
        (4, 1.0),
        (6, 1.0),
        (8, 1.0),
    ]


def test_spike_has_all_users_in_the_middle_fifth_only() -> None:
    assert shape_at("spike", 10, 8, 1.0, 100) == (2, 1.0)
    assert shape_at("spike", 45, 8, 1.0, 100) == (8, 8.0)
    assert shape_at("spike", 70, 8, 1.0, 100) == (2, 1.0)
    assert shape_at("spike", 30, 3, 1.0, None) == (3, 3.0)  # a 60 s period without --run-time
