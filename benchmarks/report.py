"""Results and the docs/BENCHMARKS.md they are written to."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

__all__ = ["Result", "machine", "render"]


@dataclass
class Result:
    id: str
    name: str
    unit: str
    values: list[float]
    target: str | None = None
    met: bool | None = None
    note: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def median(self) -> float:
        return statistics.median(self.values)


def _fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "unknown"
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    java = subprocess.run(["java", "-version"], capture_output=True, text=True, check=False)
    return {
        "machine": f"{os.cpu_count()} cores ({cpu}), {mem} RAM, {platform.platform()}",
        "python": platform.python_version(),
        "java": (java.stderr.splitlines() or ["?"])[0],
        "kafka": "4.1.1 (single-node KRaft, local, from Maven Central jars)",
        "libraries": ", ".join(
            f"{name} {version(name)}"
            for name in ("faust-streaming", "aiokafka", "sqlalchemy", "psycopg", "aiohttp")
        ),
    }


def render(
    results: list[Result], runs: int, size: str, methods: dict[str, str] | None = None
) -> str:
    m = machine()
    lines = [
        "# Benchmarks",
        "",
        f"Written by `make bench` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC (size `{size}`, "
        f"{runs} runs each; the figure is the median, with min and max).",
        "",
        *[f"- **{k}**: {v}" for k, v in m.items()],
        "",
        "| id | what | median | min | max | unit | target | met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        met = "—" if r.met is None else ("yes" if r.met else "**no**")
        lines.append(
            f"| {r.id} | {r.name} | {_fmt(r.median)} | {_fmt(min(r.values))} | "
            f"{_fmt(max(r.values))} | {r.unit} | {r.target or '—'} | {met} |"
        )
    lines += ["", "Notes per benchmark:", ""]
    for r in results:
        lines.append(f"- **{r.id} {r.name}**: {r.note}")
        for k, v in r.extra.items():
            lines.append(f"  - {k}: {v}")
    analysis = Path(__file__).with_name("analysis.md")
    if analysis.exists():
        lines += ["", analysis.read_text().strip()]
    if methods:
        lines += ["", "## Method", ""]
        for name, text in methods.items():
            lines += [f"### {name}", "", text.strip(), ""]
    return "\n".join(lines) + "\n"
