"""A realistic CDR and node-facts log, produced by the real rule engine from a cluster story.

Two media nodes; sessions with participants, media, a recording and a broadcast; a blip; a crash
that closes two sessions; one of them re-created on the other node inside the recovery window and
re-joined; the crashed node coming back; one more session after the window. The records carry the
headers and partitions the detector would give them, so projector tests feed it what it reads.
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

from services.core import codec
from services.core.projection import ProjectedRecord
from services.core.rules import Emit, Output
from tests.support.rules_builders import (
    GRACE_MS,
    T0,
    Payload,
    Rig,
    broadcast_started,
    inbound_created,
    node_connected,
    node_disconnected,
    outbound_created,
    participant_joined,
    participant_left,
    recording_started,
    session_created,
    session_destroyed,
)

__all__ = ["PARTITIONS", "Story", "cdr_story", "to_records"]

PARTITIONS = 12
NODE_A, NODE_B = "media_i-0aaa", "media_i-0bbb"
BLIP_AT = T0 + 1_000
DISCONNECT_AT = T0 + 10_000
CRASH_AT = DISCONNECT_AT + GRACE_MS  # D
RECREATED_AT = CRASH_AT + 4_000
NODE_BACK_AT = CRASH_AT + 20_000
LATE_AT = CRASH_AT + 400_000  # after the 300 s recovery window
INCIDENT = f"{NODE_A}_{DISCONNECT_AT}"
BLIP = f"{NODE_A}_{BLIP_AT}"


@dataclass(frozen=True)
class Story:
    records: list[ProjectedRecord]
    topics: dict[str, str]


def cdr_story(cdr_topic: str = "mediacdr.cdr", nodes_topic: str = "mediacdr.nodes") -> Story:
    rig = Rig()
    out: list[Output] = []
    out += rig.liveness(node_connected(NODE_A, T0))
    out += rig.liveness(node_connected(NODE_B, T0 + 10))
    # ses_Alpha on A: two participants who publish and see each other, a recording, a broadcast.
    out += rig.session(NODE_A, session_created("ses_Alpha", T0 + 100, NODE_A))
    out += rig.session(NODE_A, participant_joined("ses_Alpha", "con_Ann", T0 + 200))
    out += rig.session(NODE_A, participant_joined("ses_Alpha", "con_Bob", T0 + 300))
    out += rig.session(NODE_A, outbound_created("ses_Alpha", "con_Ann", T0 + 400))
    out += rig.session(NODE_A, outbound_created("ses_Alpha", "con_Bob", T0 + 410))
    out += rig.session(NODE_A, inbound_created("ses_Alpha", "con_Bob", "con_Ann", T0 + 420))
    out += rig.session(NODE_A, recording_started("ses_Alpha", T0 + 500))
    out += rig.session(NODE_A, broadcast_started("ses_Alpha", T0 + 600))
    # A blip of A: reconnected inside the grace window.
    out += rig.liveness(node_disconnected(NODE_A, BLIP_AT))
    out += rig.liveness(node_connected(NODE_A, BLIP_AT + 1_500))
    # ses_Beta on A with one participant; ses_Gamma on B lives and ends normally.
    out += rig.session(NODE_A, session_created("ses_Beta", T0 + 3_000, NODE_A))
    out += rig.session(NODE_A, participant_joined("ses_Beta", "con_Cid", T0 + 3_100))
    out += rig.session(NODE_B, session_created("ses_Gamma", T0 + 4_000, NODE_B))
    out += rig.session(NODE_B, participant_joined("ses_Gamma", "con_Dee", T0 + 4_100))
    out += rig.session(NODE_B, participant_left("ses_Gamma", "con_Dee", T0 + 64_100, T0 + 4_100))
    out += rig.session(NODE_B, session_destroyed("ses_Gamma", T0 + 64_200, T0 + 4_000))
    # A crashes: the grace window passes without a reconnection.
    out += rig.liveness(node_disconnected(NODE_A, DISCONNECT_AT))
    out += rig.advance(NODE_A, CRASH_AT)
    # ses_Alpha comes back on B within the window; two people re-join.
    out += rig.session(NODE_B, session_created("ses_Alpha", RECREATED_AT, NODE_B))
    out += rig.session(NODE_B, participant_joined("ses_Alpha", "con_Ann2", RECREATED_AT + 500))
    out += rig.session(NODE_B, participant_joined("ses_Alpha", "con_Bob2", RECREATED_AT + 900))
    out += rig.liveness(node_connected(NODE_A, NODE_BACK_AT))
    # ses_Beta is created again long after the window: a new session, not a recovery.
    out += rig.session(NODE_B, session_created("ses_Beta", LATE_AT, NODE_B))
    return Story(to_records(out, cdr_topic, nodes_topic), {"cdr": cdr_topic, "nodes": nodes_topic})


def to_records(
    outputs: Iterable[Output], cdr_topic: str, nodes_topic: str
) -> list[ProjectedRecord]:
    """The CDR and node-fact records of ``outputs``, placed on partitions by key like Kafka."""
    offsets: dict[tuple[str, int], itertools.count[int]] = {}
    records = []
    for emit in outputs:
        if not isinstance(emit, Emit) or emit.stream not in ("cdr", "nodes"):
            continue
        topic = cdr_topic if emit.stream == "cdr" else nodes_topic
        partition = zlib.crc32(emit.key.encode()) % PARTITIONS
        offset = next(offsets.setdefault((topic, partition), itertools.count()))
        body: Payload = dict(emit.body)
        event = str(body["event"])
        records.append(
            ProjectedRecord(
                "cdr" if emit.stream == "cdr" else "nodes",
                topic,
                partition,
                offset,
                event,
                body,
                codec.ce_id(event, body),
                emit.media_node_id,
                emit.incident_id,
            )
        )
    return records


def busy_cluster(sessions: int, participants: int = 3, t0: int = T0) -> list[Output]:
    """What the detector writes for a busy cluster: ``sessions`` sessions over three nodes, each
    with people who join and leave; node C crashes with its open sessions at the end."""
    rig = Rig()
    nodes = ["media_i-0c01", "media_i-0c02", "media_i-0c03"]
    out: list[Output] = []
    for i, node in enumerate(nodes):
        out += rig.liveness(node_connected(node, t0 + i))
    t = t0 + 100
    for n in range(sessions):
        node, sid = nodes[n % 3], f"ses_{n:06d}"
        created = t
        out += rig.session(node, session_created(sid, created, node))
        people = [f"con_{n:06d}_{p}" for p in range(participants)]
        for p, cid in enumerate(people):
            out += rig.session(node, participant_joined(sid, cid, created + 10 + p))
        if node != nodes[2]:
            for p, cid in enumerate(people):
                out += rig.session(
                    node, participant_left(sid, cid, created + 5_000 + p, created + 10 + p)
                )
            out += rig.session(node, session_destroyed(sid, created + 6_000, created))
        t += 20
    out += rig.liveness(node_disconnected(nodes[2], t + 10_000))
    out += rig.advance(nodes[2], t + 10_000 + GRACE_MS)
    return out
