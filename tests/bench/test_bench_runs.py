"""`make bench` runs end to end at a tiny size (figures are not checked: benchmarks are not
tests); the report names every benchmark and the machine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_benchmarks_run_end_to_end(
    kafka_bootstrap: str, postgres_url: str, tmp_path: Path
) -> None:
    report = tmp_path / "BENCHMARKS.md"
    env = {
        **os.environ,
        "MEDIACDR_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "MEDIACDR_TEST_POSTGRES_URL": postgres_url,
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--size",
            "tiny",
            "--runs",
            "1",
            "--output",
            str(report),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    text = report.read_text()
    for name in ("B1", "B2", "B3", "B4", "B5", "B6", "## Method", "cores", "aiokafka"):
        assert name in text, name
