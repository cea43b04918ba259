"""``proto.receive.append_unread``: what is unread always comes first, whole reads are kept as
they came, and a gathering buffer is compacted once most of it has been read."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from proto.receive import COMPACT_AFTER, append_unread


def test_a_read_into_an_empty_buffer_is_kept_as_it_came() -> None:
    data = b"GET / HTTP/1.1\r\n\r\n"
    buf, pos = append_unread(b"", 0, data)
    assert buf is data and pos == 0
    buf, pos = append_unread(b"abc", 3, bytearray(b"xyz"))  # all read: a fresh bytes copy
    assert type(buf) is bytes and buf == b"xyz" and pos == 0


def test_bytes_behind_unread_ones_are_gathered() -> None:
    buf, pos = append_unread(b"abcdef", 4, b"gh")
    assert type(buf) is bytearray and bytes(buf[pos:]) == b"efgh"
    again, pos = append_unread(buf, pos, b"ij")
    assert again is buf and bytes(buf[pos:]) == b"efghij"


def test_a_mostly_read_bytearray_is_compacted() -> None:
    buf = bytearray(b"x" * (COMPACT_AFTER + 10) + b"tail")
    out, pos = append_unread(buf, COMPACT_AFTER + 10, b"!")
    assert pos == 0 and bytes(out) == b"tail!"


@given(st.lists(st.binary(max_size=40), max_size=30), st.lists(st.integers(0, 40), max_size=30))
def test_unread_bytes_come_out_in_order(reads: list[bytes], takes: list[int]) -> None:
    buf: bytes | bytearray = b""
    pos = 0
    expected = b""
    taken = b""
    for i, data in enumerate(reads):
        buf, pos = append_unread(buf, pos, data)
        expected += data
        n = min(takes[i] if i < len(takes) else 0, len(buf) - pos)
        taken += bytes(buf[pos : pos + n])
        pos += n
    assert taken + bytes(buf[pos:]) == expected
