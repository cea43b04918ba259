"""Content-Length values as ``body_framing`` reads them (RFC 9112 6.3): one plain number is
the usual case and has a quick reading; every other value takes the careful one."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.http1.events import ParseError
from edge.http1.framing import BODY_LENGTH, body_framing


@pytest.mark.parametrize(
    ("fields", "length"),
    [
        ([b"0"], 0),
        ([b"1024"], 1024),
        ([b"000123"], 123),
        ([b"9" * 18], 10**18 - 1),
        ([b" 7\t"], 7),  # blanks the parser left (it strips OWS before this)
        ([b"5, 5"], 5),
        ([b"5", b"5"], 5),
    ],
)
def test_lengths_read(fields: list[bytes], length: int) -> None:
    assert body_framing(None, fields, is_request=True) == (BODY_LENGTH, length)


@pytest.mark.parametrize(
    "fields",
    [
        [b""],
        [b"1" * 19],
        [b"+5"],
        [b"-1"],
        [b"1x"],
        [b"0x10"],
        [b"\xd9\xa3"],
        [b"5, 6"],
        [b"5", b"6"],
    ],
)
def test_bad_lengths_refused(fields: list[bytes]) -> None:
    with pytest.raises(ParseError):
        body_framing(None, fields, is_request=True)


@given(st.integers(0, 10**18 - 1))
def test_any_number_up_to_18_digits(n: int) -> None:
    assert body_framing(None, [str(n).encode()], is_request=False) == (BODY_LENGTH, n)
