"""`mediacdr simulate` against a real detector: a small cluster with crashes, blips, a flap,
planned shutdowns and malformed records, fed as fast as possible (timestamps from now on).

What the simulator says it injected is what the detector finds: one `nodeCrashed` per crash,
a dead letter per malformed record with the expected code, and no other dead letter.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from tests.support.kafka import body, event_is, headers_of
from tests.support.lab import parse_summary
from tests.support.services import cli, new_deployment, running_service

SIMULATE = (
    "simulate",
    "--mode=max",
    "--duration=10",
    "--nodes=4",
    "--session-rate=3",
    "--mean-session=8",
    "--seed=19",  # chosen so that every kind of fault below happens at least once
    "--crash-rate=400",
    "--blip-rate=400",
    "--flap-rate=100",
    "--shutdown-rate=200",
    "--malformed-rate=30",
    "--node-return=3",
)


def test_what_the_simulator_injects_is_what_the_detector_finds(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    d = new_deployment(kafka_bootstrap, tmp_path)
    with running_service(d, "detector"):
        done = cli(d, *SIMULATE)
        counts = parse_summary(done.stdout)
        assert counts["crashes"] >= 2 and counts["blips"] >= 1 and counts["flaps"] >= 1
        assert counts["planned_shutdowns"] >= 1 and counts["node_recoveries"] >= 1
        assert counts["malformed_total"] >= 3
        d.wait("deadletter", counts["malformed_total"], timeout=60)
        d.wait("cdr", counts["crashes"], event_is("nodeCrashed"), timeout=60)
        d.wait("cdr", counts["node_recoveries"], event_is("nodeRecovered"), timeout=60)
        # every decision the story calls for is due by its horizon; give the detector a moment
        wait_s = (counts["horizon_ms"] - time.time() * 1000) / 1000 + 2
        time.sleep(max(0.0, wait_s))
        cdr = [body(r) for r in d.everything("cdr")]
        dead = d.everything("deadletter")
    crashes = [(b["id"], b["timeOfDisconnection"]) for b in cdr if b["event"] == "nodeCrashed"]
    assert len(crashes) == len(set(crashes)) == counts["crashes"]
    codes = Counter(headers_of(r)["error"] for r in dead)
    expected = {
        name.removeprefix("malformed_"): n
        for name, n in counts.items()
        if name.startswith("malformed_") and name != "malformed_total"
    }
    assert codes == expected
    events = Counter(b["event"] for b in cdr)
    assert events["sessionCreated"] == counts["sessions"]
    assert events["participantJoined"] == counts["participants"]
    assert events["nodeRecovered"] == counts["node_recoveries"]
    statuses = [b for b in cdr if b["event"] == "mediaNodeStatusChanged"]
    assert len(statuses) == 2 * counts["planned_shutdowns"]
