"""The fault matrix (issue 8, docs/RELIABILITY.md): one fault per test, injected at random moments
into a deployment under simulator load (max mode, a modest rate), then every invariant checked
against what is really on the topics, in SQL and at the webhook receiver
(tests/support/invariants.py):

- every input record's outcome is on the CDR or the dead-letter topic, with the ``ce_id`` the
  input log calls for, and nothing else is;
- every crash is decided exactly once;
- the SQL projection equals a rebuild from the topics;
- every CDR record reached the webhook receiver at least once, in CDR order per key;
- no service stopped by itself.

The broker and PostgreSQL are this module's own (tests/support/lab.py), so restarting them
disturbs no other test. A failure prints the seed; ``MEDIACDR_FAULT_SEED=<seed>`` replays the
same moments and story.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.lab import Infra, Lab, Load, dedicated_infra, fault_seed

STORY_S = 15  # simulated seconds of cluster life; sent in about as many wall seconds
RATE = 50  # records per second


@pytest.fixture(scope="module")
def infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Infra]:
    with dedicated_infra(tmp_path_factory.mktemp("fault-infra")) as infra:
        yield infra


def run_with_fault(infra: Infra, workdir: Path, inject: Callable[[Lab, Load], None]) -> None:
    """Start the deployment, start the load, inject, let everything converge, check."""
    lab = Lab(infra, workdir, fault_seed())
    try:
        lab.start()
        load = lab.load(STORY_S, RATE)
        inject(lab, load)
        summary = load.finish()
        report = lab.verify(summary, timeout_s=150)
    finally:
        lab.close()
    print("\n".join(lab.events), report.text(), sep="\n")  # shown with -rP, and on failure
    assert report.ok, "\n" + "\n".join(lab.events) + "\n" + report.text()


def kill_repeatedly(
    name: str, kills: int, gap_s: tuple[float, float], down_s: float
) -> Callable[[Lab, Load], None]:
    def inject(lab: Lab, _load: Load) -> None:
        for _ in range(kills):
            lab.sleep(lab.rng.uniform(*gap_s))
            lab.kill_9(name, lab.rng.uniform(0, down_s))

    return inject


def test_kill_9_of_the_detector(infra: Infra, tmp_path: Path) -> None:
    # Late in the story, when sessions end every second or so: a session ended since the last
    # offset commit is what the router once got wrong on re-reading (D2 in RELIABILITY.md).
    run_with_fault(infra, tmp_path, kill_repeatedly("detector", 1, (8, 13), 2.0))


def test_kill_9_of_the_projector(infra: Infra, tmp_path: Path) -> None:
    run_with_fault(infra, tmp_path, kill_repeatedly("projector", 3, (1, 6), 1.0))


def test_kill_9_of_the_webhooks_service(infra: Infra, tmp_path: Path) -> None:
    run_with_fault(infra, tmp_path, kill_repeatedly("webhooks", 3, (1, 6), 1.0))


def test_broker_restart(infra: Infra, tmp_path: Path) -> None:
    def inject(lab: Lab, _load: Load) -> None:
        lab.sleep(lab.rng.uniform(3, 10))
        lab.restart_broker()

    run_with_fault(infra, tmp_path, inject)


def test_broker_down_longer_than_the_group_session(infra: Infra, tmp_path: Path) -> None:
    # 20 s > the detector's 10 s group session: the worker loses its partitions during the
    # outage, so the outage must be seen by something other than its end-offset requests.
    def inject(lab: Lab, _load: Load) -> None:
        lab.sleep(lab.rng.uniform(3, 6))
        lab.restart_broker(down_s=20)

    run_with_fault(infra, tmp_path, inject)


def test_postgresql_stopped_for_30_s(infra: Infra, tmp_path: Path) -> None:
    def inject(lab: Lab, _load: Load) -> None:
        lab.sleep(lab.rng.uniform(2, 6))
        lab.postgres_outage(30)

    run_with_fault(infra, tmp_path, inject)


def test_webhook_receiver_failing_then_timing_out(infra: Infra, tmp_path: Path) -> None:
    def inject(lab: Lab, _load: Load) -> None:
        lab.sleep(lab.rng.uniform(1, 4))
        lab.receiver_trouble(failing_s=8, hanging_s=8)

    run_with_fault(infra, tmp_path, inject)
