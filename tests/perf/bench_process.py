"""One measurement of a benchmark in a process of its own, so the peak RSS it reports is its
own and not the sum of every size the test measured before it.

A benchmark module calls :func:`measure_in_subprocess` with its own file, and runs
:func:`serve` under ``if __name__ == "__main__"``: ``python bench.py N PATH`` prints its
``measure(N, PATH)`` as one JSON line."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def measure_in_subprocess(script: str, n: int, path: Path, *, timeout: float) -> dict:
    out = subprocess.run(
        [sys.executable, script, str(n), str(path)],
        capture_output=True, text=True, timeout=timeout, check=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def serve(measure: Callable[[int, Path], dict]) -> None:
    print(json.dumps(measure(int(sys.argv[1]), Path(sys.argv[2]))))
