"""The session router's table rows: ended, not deleted, so a replay after a kill -9 routes the
records it had already forwarded instead of dead-lettering them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiokafka.partitioner import DefaultPartitioner

from services.core.errors import UnknownSession
from services.core.validation import ValidInput, validate_input
from services.detector.routing import bind, key_partition, prunable, route_session
from services.simulator import payloads as p

T = 1_795_000_000_000


def _valid(payload: dict[str, Any]) -> ValidInput:
    return validate_input("session", b"s1", json.dumps(payload).encode())


def test_a_replayed_record_of_an_ended_session_is_still_routed() -> None:
    created = _valid(p.session_created("s1", T, "n1"))
    joined = _valid(p.participant_joined("s1", "c1", T + 1, p.Person()))
    destroyed = _valid(p.session_destroyed("s1", T + 2, T, "sessionClosedByServer"))
    route = bind("sessionCreated", route_session(created, None, 10), None, 0, 10)
    assert route == {"node": "n1"}
    ended = bind("sessionDestroyed", route_session(destroyed, route, 12), route, 0, 12)
    assert ended == {"node": "n1", "ended": 12, "p": 0}
    assert route_session(joined, ended, 11) == "n1"  # re-read after a restart
    with pytest.raises(UnknownSession):
        route_session(joined, ended, 13)  # really after the end
    again = bind("sessionCreated", "n2", ended, 0, 14)
    assert again == {"node": "n2"}


def test_an_ended_route_is_pruned_once_the_read_position_has_passed_it() -> None:
    ended = {"node": "n1", "ended": 12, "p": 0}
    assert not prunable(ended, 0, 12)
    assert prunable(ended, 0, 13)
    assert not prunable(ended, 1, 13)
    assert not prunable({"node": "n1"}, 0, 100)


def test_key_partition_is_kafkas_default_partitioner() -> None:
    partitioner = DefaultPartitioner()
    for n in (1, 3, 12):
        for key in (b"ses_Jd8tUyvhXO", b"media_i-0a1b2c3d4e5f60001", b"", "ñ".encode()):
            assert key_partition(key, n) == partitioner(key, list(range(n)), list(range(n)))
