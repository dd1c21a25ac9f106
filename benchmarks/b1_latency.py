"""B1: crash-decision delay — nodeCrashed on the CDR topic − (deadline + allowed lateness).

Runs scripts/measure_crash_latency.py (its own detector on fresh topics): N nodes that disconnect
for good, one every 100 ms, stamped with the wall clock.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

from benchmarks.infra import ROOT, Bench
from benchmarks.report import Result

__all__ = ["run"]


def run(bench: Bench, crashes: int, runs: int) -> list[Result]:
    p50s, p99s = [], []
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, "scripts/measure_crash_latency.py", "--crashes", str(crashes)],
            cwd=ROOT,
            env={**os.environ, "MEDIACDR_KAFKA_BOOTSTRAP": bench.bootstrap},
            capture_output=True,
            text=True,
            timeout=900,
            check=True,
        )
        p50s.append(_ms(done.stdout, "p50"))
        p99s.append(_ms(done.stdout, "p99"))
    return [
        Result(
            "B1",
            "crash-decision delay p99",
            "ms",
            p99s,
            "<= 100 ms",
            max(p99s) <= 100,
            f"{crashes} nodes disconnecting for good, one every 100 ms; no other load "
            "(the 1,000-node / 10,000-session load of the issue is not run yet)",
            extra={"p50 (median of runs)": f"{sorted(p50s)[len(p50s) // 2]:.0f} ms"},
        ),
    ]


def _ms(output: str, name: str) -> float:
    found = re.search(rf"\b{name} (-?[\d.]+)", output)
    if not found:
        raise ValueError(f"no {name} in the latency script's output:\n{output}")
    return float(found.group(1))
