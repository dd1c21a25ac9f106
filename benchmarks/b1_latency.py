"""B1: crash-decision delay — nodeCrashed on the CDR topic − (deadline + allowed lateness).

Two figures, each over its own fresh topics and detector:

- **quiet cluster**: scripts/measure_crash_latency.py — N nodes that disconnect for good, one
  every 100 ms, stamped with the wall clock; nothing else on the input topics.
- **under load** (`benchmarks/b1_load.py`): first the cluster is set up — nodes connected and
  S live sessions spread round-robin over them, each with P participants who all publish and
  receive each other (built with the simulator's payload builders) — and the clock waits until
  the detector has written every CDR copy. Then every node heartbeats once a second (spread
  evenly over the second, stamped with the wall clock, from this process); after 5 s of that,
  C nodes, picked at random, disconnect for good, one every `spacing` ms, and stop
  heartbeating. Each crash closes the node's sessions, so its cascade is part of the load.

Delay per crash = (time this process read the `nodeCrashed` from the CDR topic) − (its
`timestamp`, the deadline *D* = *d* + grace, + 100 ms allowed lateness); *d* is the wall-clock
stamp of the `nodeDisconnected`. Under load the detector's own `ce_decidedat` header − (*D* +
lateness) is reported beside it (the decision without the trip to the reading consumer).
p50/p99 are over the C crashes of a run; the table shows the median, min and max of the runs.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys

from benchmarks.b1_load import Load, measure
from benchmarks.infra import ROOT, Bench
from benchmarks.report import Result

__all__ = ["Load", "run"]


def run(bench: Bench, crashes: int, runs: int, load: Load | None = None) -> list[Result]:
    results = [_quiet(bench, crashes, runs)]
    if load is not None:
        results.append(_loaded(bench, load, runs))
    return results


def _quiet(bench: Bench, crashes: int, runs: int) -> Result:
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
    return Result(
        "B1",
        "crash-decision delay p99, quiet cluster",
        "ms",
        p99s,
        "<= 100 ms",
        max(p99s) <= 100,
        f"{crashes} nodes disconnecting for good, one every 100 ms; no other load",
        extra={"p50 (median of runs)": f"{statistics.median(p50s):.0f} ms"},
    )


def _loaded(bench: Bench, load: Load, runs: int) -> Result:
    samples = [measure(bench, load) for _ in range(runs)]
    p99s = [percentile(s.delays("on_topic"), 0.99) for s in samples]

    def median_of(q: float, attr: str) -> str:
        return f"{statistics.median(percentile(s.delays(attr), q) for s in samples):.0f} ms"

    note = (
        f"{load.crashes} crashes, one every {load.spacing_ms} ms, while {load.nodes:,} nodes "
        f"heartbeat every {load.heartbeat_ms} ms and {load.sessions:,} sessions of "
        f"{load.participants} participants (full media mesh) are live"
    )
    stalls = [s.stalled for s in samples if s.stalled]
    setup_cpu_ms = statistics.median(s.preload_cpu_s / s.preload_records for s in samples) * 1000
    if stalls:
        note += "; STALLED: " + "; ".join(stalls)
    return Result(
        "B1",
        f"crash-decision delay p99, {load.nodes:,} nodes heartbeating + "
        f"{load.sessions:,} live sessions",
        "ms",
        p99s,
        "<= 100 ms",
        max(p99s) <= 100,
        note,
        extra={
            "p50 (median of runs)": median_of(0.5, "on_topic"),
            "max (median of runs)": median_of(1.0, "on_topic"),
            "detector's ce_decidedat − (D + lateness), p50 / p99 (median of runs)": (
                f"{median_of(0.5, 'decided')} / {median_of(0.99, 'decided')}"
            ),
            "heartbeats sent/s (min of runs)": f"{min(s.heartbeats_per_s for s in samples):,.0f}",
            "crashes not decided within 60 s of the last disconnection (per run)": ", ".join(
                str(s.undecided) for s in samples
            ),
            "while crashes are injected: detector CPU s per s; liveness records it committed "
            "per s; its CPU ms per committed liveness record (cascades and marks included); "
            "liveness records and node-agent records (`<app id>-nodeevents`: forwards and marks) "
            "not committed at the end (per run)": "; ".join(
                f"{s.detector_cpu_s / s.phase_s:.2f}, {s.liveness_applied / s.phase_s:,.0f}/s, "
                f"{s.detector_cpu_s * 1000 / max(1, s.liveness_applied):.2f} ms, "
                f"{s.liveness_backlog:,} and {s.internal_backlog:,}"
                for s in samples
                if s.phase_s
            ),
            "set-up: input records; seconds until every CDR copy was out; detector CPU ms "
            "per record (median)": (
                f"{samples[0].preload_records:,}; "
                f"{statistics.median(s.preload_s for s in samples):.0f} s; "
                f"{setup_cpu_ms:.2f}"
            ),
        },
    )


def percentile(values: list[float], q: float) -> float:
    """Nearest rank, as scripts/measure_crash_latency.py computes it."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _ms(output: str, name: str) -> float:
    found = re.search(rf"\b{name} (-?[\d.]+)", output)
    if not found:
        raise ValueError(f"no {name} in the latency script's output:\n{output}")
    return float(found.group(1))
