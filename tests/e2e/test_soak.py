"""The soak (tests/support/soak.py, `make soak` runs 30 minutes) at two minutes: the faults of the
matrix one after another under continuous load, then every invariant checked once over all of it.
"""

from __future__ import annotations

from pathlib import Path

from tests.support.lab import fault_seed
from tests.support.soak import FAULTS, run_soak


def test_two_minute_soak(tmp_path: Path) -> None:
    lines: list[str] = []
    result = run_soak(
        2,
        tmp_path,
        seed=fault_seed(),
        faults=tuple(FAULTS),
        fault_every_s=20,
        status_every_s=30,
        out=lines.append,
    )
    print(result.text())  # shown with -rP, and on failure
    assert sum(result.faults.values()) >= 4, result.text()
    assert result.report.ok, "\n" + result.text()
