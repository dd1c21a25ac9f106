"""Hostile input records for the fuzz tests, as hypothesis strategies.

One generator serves the pure tests (validation, ingest, the rules) and the end-to-end corpus
(the detector on a real broker): random bytes, broken and deep JSON, huge strings, unicode (lone
surrogates and invalid UTF-8 too), wrong types, missing and extra keys, boundary and far-off
timestamps, wrong record keys — and coherent stories played out of order and with repeats.

A record is ``(kind, key, value)``: ``kind`` is ``"liveness"`` or ``"session"`` (the input
topic), ``key`` and ``value`` the bytes of the Kafka record.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any, Literal, TypeVar

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from services.core.events import LIVENESS_EVENTS, SESSION_EVENTS
from services.core.schemas import SCHEMA_DIR
from services.core.validation import MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS

__all__ = [
    "NODES",
    "SESSIONS",
    "Kind",
    "Record",
    "deterministic_examples",
    "input_records",
    "raw_values",
    "story_records",
]

Kind = Literal["liveness", "session"]
Record = tuple[Kind, bytes | None, bytes | None]
T = TypeVar("T")

NODES = ("media_f0", "media_f1", "media_f2")
SESSIONS = ("ses_F0", "ses_F1", "ses_F2", "ses_F3")
KEY_FIELD: dict[Kind, str] = {"liveness": "id", "session": "sessionId"}
T0 = 1_750_000_000_000  # 2025-06-15

#: Stamps at and around the accepted range, far outside it, and of the wrong type.
TIMESTAMPS: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from(
        [
            MIN_TIMESTAMP_MS - 1,
            MIN_TIMESTAMP_MS,
            MAX_TIMESTAMP_MS - 1,
            MAX_TIMESTAMP_MS,
            0,
            -1,
            2**63,
            -(2**63) - 1,
            10**30,
            1.75e12,
            float(T0),
            str(T0),
        ]
    ),
    st.integers(MIN_TIMESTAMP_MS, MAX_TIMESTAMP_MS - 1),
    st.integers(T0 - 10_000, T0 + 10_000),
    st.floats(),
    st.booleans(),
    st.none(),
)

#: Values of any JSON type, for fields that expect another.
WRONG_TYPES: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(-(2**70), 2**70),
    st.floats(),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


def _huge(n: int, char: str) -> str:
    return char * n


def strings(max_huge: int) -> st.SearchStrategy[str]:
    """Short text, text with lone surrogates, characters JSON must escape, and huge strings."""
    huge = st.builds(
        _huge, st.integers(1_000, max_huge), st.sampled_from(["x", '"', "\\", "é", "😀", "\0"])
    )
    surrogates = st.text(st.characters(categories=["Cs"]), min_size=1, max_size=3)
    return st.one_of(
        st.text(max_size=30),
        st.text(st.characters(codec="utf-8"), max_size=30),
        st.builds(lambda a, b: a + b, st.text(max_size=5), surrogates),
        huge,
    )


@cache
def examples(kind: Kind) -> dict[str, dict[str, Any]]:
    """The published example of every input event of ``kind``, by event name."""
    folder = Path(SCHEMA_DIR) / kind
    found = {}
    for path in sorted(folder.glob("*.example.json")):
        body = json.loads(path.read_text(encoding="utf-8"))
        found[str(body["event"])] = body
    return found


def _with_identity(kind: Kind, body: dict[str, Any], ident: str, node: str, ts: int) -> Any:
    body = dict(body, timestamp=ts)
    body[KEY_FIELD[kind]] = ident
    if kind == "session":
        body.pop("uniqueSessionId", None)  # the detector adds it; an input may carry one
        if body["event"] == "sessionCreated" or "mediaNodeId" in body:
            body["mediaNodeId"] = node
    return body


@st.composite
def shaped(draw: st.DrawFn, kind: Kind, max_huge: int) -> dict[str, Any]:
    """An example event with fresh identities and then up to three mutations."""
    name = draw(st.sampled_from(sorted(examples(kind))))
    ident = draw(st.sampled_from(NODES if kind == "liveness" else SESSIONS))
    node = draw(st.sampled_from(NODES))
    ts = draw(st.integers(T0, T0 + 60_000))
    body = _with_identity(kind, examples(kind)[name], ident, node, ts)
    for _ in range(draw(st.integers(0, 3))):
        body = draw(_mutation(kind, body, max_huge))
    return body


def _mutation(kind: Kind, body: dict[str, Any], max_huge: int) -> st.SearchStrategy[dict[str, Any]]:
    fields = sorted(body)
    every_event = sorted(LIVENESS_EVENTS | SESSION_EVENTS | {"nodeCrashed", ""})

    def dropped(name: str) -> dict[str, Any]:
        return {k: v for k, v in body.items() if k != name}

    def replaced(pair: tuple[str, Any]) -> dict[str, Any]:
        return body | {pair[0]: pair[1]}

    some_field = st.sampled_from(fields)
    return st.one_of(
        some_field.map(dropped),
        st.tuples(some_field, WRONG_TYPES).map(replaced),
        st.tuples(some_field, strings(max_huge)).map(replaced),
        TIMESTAMPS.map(lambda ts: body | {"timestamp": ts}),
        st.sampled_from(every_event).map(lambda e: body | {"event": e}),
        st.tuples(st.text(max_size=10), WRONG_TYPES).map(replaced),
    )


def _encode(body: Any, ascii_only: bool) -> bytes:
    # surrogatepass: a lone surrogate becomes bytes that are not UTF-8, as a careless producer
    # would send them; ensure_ascii sends it as a \\udXXX escape instead
    return json.dumps(body, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


def _deep(depth: int, opener: str) -> bytes:
    closer = {"[": "]", '{"a":': "}"}[opener]
    return (opener * depth + "1" + closer * depth).encode()


def raw_values(kind: Kind, max_huge: int = 20_000) -> st.SearchStrategy[bytes | None]:
    """Values: garbage, broken, deep or non-object JSON, and mutated events."""
    event_json = st.builds(_encode, shaped(kind, max_huge), st.booleans())
    broken = st.tuples(event_json, st.integers(0, 400), st.binary(max_size=3)).map(
        lambda t: t[0][: t[1]] + t[2]
    )
    return st.one_of(
        st.none(),
        st.binary(max_size=64),
        st.builds(_deep, st.integers(1, 50_000), st.sampled_from(["[", '{"a":'])),
        st.sampled_from([b"[]", b"1", b'"x"', b"null", b"true", b"NaN", b'{"a":Infinity}']),
        st.sampled_from([b'{"event":"nodeHeartbeat","timestamp":1e400,"id":"media_f0"}']),
        st.integers(4_000, 6_000).map(
            lambda n: b'{"event":"nodeHeartbeat","timestamp":1' + b"0" * n + b',"id":"x"}'
        ),
        broken,
        event_json,
        event_json,
        event_json,
    )


def _key_of(kind: Kind, value: bytes | None) -> bytes | None:
    try:
        body = json.loads(value or b"")
        return str(body[KEY_FIELD[kind]]).encode("utf-8", "surrogatepass")
    except (ValueError, TypeError, KeyError, RecursionError):
        return None


@st.composite
def input_records(draw: st.DrawFn, max_huge: int = 20_000) -> Record:
    """One record of either input topic; its key is usually the one it should have."""
    kind: Kind = draw(st.sampled_from(["liveness", "session"]))
    value = draw(raw_values(kind, max_huge))
    key = draw(
        st.one_of(
            st.just(_key_of(kind, value)),
            st.just(_key_of(kind, value)),
            st.just(_key_of(kind, value)),
            st.none(),
            st.binary(max_size=8),
            st.sampled_from([n.encode() for n in NODES + SESSIONS]),
        )
    )
    return kind, key, value


# -- coherent stories, shuffled and repeated ----------------------------------------------------


def _story(sid: str, node: str, t: int, people: int) -> list[tuple[Kind, dict[str, Any]]]:
    """A node that connects, a session with ``people`` participants, and its end."""
    joined = examples("session")["participantJoined"]
    left = examples("session")["participantLeft"]
    out: list[tuple[Kind, dict[str, Any]]] = [
        ("liveness", {"event": "nodeConnected", "timestamp": t, "id": node}),
        ("session", {"event": "sessionCreated", "timestamp": t + 1, "sessionId": sid,
                     "mediaNodeId": node}),
    ]  # fmt: skip
    for i in range(people):
        cid = f"con_{sid}_{i}"
        base = {"sessionId": sid, "connectionId": cid}
        out.append(("session", _pick(joined, base, timestamp=t + 10 + i)))
        out.append(
            ("session", _pick(left, base, timestamp=t + 500 + i, startTime=t + 10 + i, duration=0))
        )
    out.append(("liveness", {"event": "nodeHeartbeat", "timestamp": t + 700, "id": node}))
    out.append(
        ("session", {"event": "sessionDestroyed", "timestamp": t + 900, "sessionId": sid,
                     "startTime": t + 1, "duration": 0, "reason": "lastParticipantLeft"})
    )  # fmt: skip
    return out


def _pick(example: dict[str, Any], base: dict[str, Any], **fields: Any) -> dict[str, Any]:
    body = {k: v for k, v in example.items() if k not in ("uniqueSessionId", "participantId")}
    body.pop("mediaNodeId", None)
    return body | base | fields


@st.composite
def story_records(draw: st.DrawFn) -> list[Record]:
    """Valid stories on fresh session ids, locally shuffled, with some records sent twice."""
    n = draw(st.integers(1, 3))
    records: list[Record] = []
    for _ in range(n):
        sid = "ses_S" + draw(st.text("abcdefghij", min_size=6, max_size=6))
        node = draw(st.sampled_from(NODES))
        t = draw(st.integers(T0, T0 + 60_000))
        for kind, body in _story(sid, node, t, draw(st.integers(0, 3))):
            value = json.dumps(body).encode()
            records.append((kind, str(body[KEY_FIELD[kind]]).encode(), value))
    swaps = draw(st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 3)), max_size=6))
    for at, distance in swaps:  # out of order: a record moves a few places
        i = at % len(records)
        j = min(len(records) - 1, i + distance)
        records[i], records[j] = records[j], records[i]
    repeats = draw(st.lists(st.integers(0, 10**6), max_size=4))
    for at in repeats:  # duplicated: a record sent again, later
        i = at % len(records)
        records.insert(min(len(records), i + 2), records[i])
    return records


def deterministic_examples(strategy: st.SearchStrategy[T], count: int) -> list[T]:
    """``count`` examples of ``strategy``, the same ones on every run (derandomized)."""
    found: list[T] = []

    @settings(
        max_examples=count,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(example: T) -> None:
        found.append(example)

    collect()
    return found
