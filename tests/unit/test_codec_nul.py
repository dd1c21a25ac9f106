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
