"""A NUL character cannot be stored in PostgreSQL text, so no record may carry one: it is
refused where every record is parsed (found by the projector's benchmark work: one such CDR
string stopped the projector on PostgreSQL)."""

from __future__ import annotations

import pytest

from services.core.codec import decode_json_object
from services.core.errors import InvalidJson


@pytest.mark.parametrize(
    "raw",
    [
        b'{"clientData": "a\\u0000b"}',
        b'{"nested": {"list": ["x", "\\u0000"]}}',
        b'{"key\\u0000": 1}',
    ],
)
def test_a_nul_character_is_refused(raw: bytes) -> None:
    with pytest.raises(InvalidJson, match="NUL"):
        decode_json_object(raw)


def test_an_escaped_backslash_before_u0000_is_plain_text() -> None:
    assert decode_json_object(b'{"path": "C:\\\\u0000"}') == {"path": "C:\\u0000"}


def test_nesting_deeper_than_the_fixed_bound_is_refused_the_same_everywhere() -> None:
    from services.core.codec import MAX_DEPTH

    shallow = '{"a":' * (MAX_DEPTH - 1) + "1" + "}" * (MAX_DEPTH - 1)
    deep = '{"a":' * (MAX_DEPTH + 1) + "1" + "}" * (MAX_DEPTH + 1)
    assert decode_json_object(shallow.encode())
    with pytest.raises(InvalidJson, match="deeper"):
        decode_json_object(deep.encode())
