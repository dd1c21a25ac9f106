"""`python -m benchmarks [--size tiny|full] [--runs N] [--only B4,B5] [--output FILE]`."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks import b1_latency, b2_throughput, b3_fanout, b4_projector, b5_webhooks, b6_memory
from benchmarks.infra import bench_infra
from benchmarks.report import Result, render

SIZES = {
    # events for B2, CDR events for B4 (and for its rebuild), deliveries for B5, crashes for B1;
    # B1 under load: heartbeating nodes, live sessions × participants, crashes one every
    # spacing ms; B3: sessions × participants on the crashing node; B6: sessions × participants
    # tracked (connections)
    "tiny": {
        "b2": 4_000,
        "b4": 2_000,
        "b4_rebuild": 4_000,
        "b5": 400,
        "b1": 5,
        "b2_scale_runs": 0,
        "b1_nodes": 20,
        "b1_sessions": 40,
        "b1_participants": 3,
        "b1_load_crashes": 5,
        "b1_spacing_ms": 200,
        "b3_sessions": 20,
        "b3_participants": 3,
        "b6_sessions": 200,
        "b6_participants": 5,
    },
    "full": {
        "b2": 40_000,
        "b4": 100_000,
        "b4_rebuild": 1_000_000,
        "b5": 5_000,
        "b1": 100,
        "b2_scale_runs": 1,
        "b1_nodes": 1_000,
        "b1_sessions": 10_000,
        "b1_participants": 3,
        "b1_load_crashes": 100,
        "b1_spacing_ms": 500,
        "b3_sessions": 1_000,
        "b3_participants": 10,
        "b6_sessions": 10_000,
        "b6_participants": 10,
    },
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", default="B1,B2,B3,B4,B5,B6")
    parser.add_argument("--output", type=Path, default=None, help="default: print only")
    args = parser.parse_args(argv)
    size, only = SIZES[args.size], set(args.only.upper().split(","))
    results: list[Result] = []
    with (
        tempfile.TemporaryDirectory(prefix="mediacdr-bench-") as tmp,
        bench_infra(Path(tmp)) as bench,
    ):
        steps: list[tuple[str, Callable[[], list[Result]]]] = [
            ("B1", lambda: b1_latency.run(bench, size["b1"], args.runs, _b1_load(size))),
            ("B2", lambda: b2_throughput.run(bench, size["b2"], args.runs, size["b2_scale_runs"])),
            (
                "B3",
                lambda: b3_fanout.run(
                    bench, size["b3_sessions"], size["b3_participants"], args.runs
                ),
            ),
            (
                "B4",
                lambda: b4_projector.run(bench, size["b4"], args.runs, size["b4_rebuild"]),
            ),
            ("B5", lambda: b5_webhooks.run(bench, size["b5"], args.runs)),
            (
                "B6",
                lambda: b6_memory.run(
                    bench, size["b6_sessions"], size["b6_participants"], args.runs
                ),
            ),
        ]
        for name, step in steps:
            if name not in only:
                continue
            started = time.monotonic()
            print(f"{name} …", file=sys.stderr, flush=True)
            found = step()
            results += found
            for r in found:
                print(
                    f"  {r.id} {r.name}: median {r.median:,.1f} {r.unit} "
                    f"(min {min(r.values):,.1f}, max {max(r.values):,.1f})",
                    file=sys.stderr,
                )
            print(f"  ({time.monotonic() - started:.0f} s)", file=sys.stderr, flush=True)
    modules = {
        "B1": b1_latency,
        "B2": b2_throughput,
        "B3": b3_fanout,
        "B4": b4_projector,
        "B5": b5_webhooks,
        "B6": b6_memory,
    }
    methods = {k: m.__doc__ or "" for k, m in modules.items() if k in only}
    text = render(results, args.runs, args.size, methods)
    if args.output:
        args.output.write_text(text)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        print(text)
    return 0


def _b1_load(size: dict[str, int]) -> b1_latency.Load:
    return b1_latency.Load(
        nodes=size["b1_nodes"],
        sessions=size["b1_sessions"],
        participants=size["b1_participants"],
        crashes=size["b1_load_crashes"],
        spacing_ms=size["b1_spacing_ms"],
    )


if __name__ == "__main__":
    sys.exit(main())
