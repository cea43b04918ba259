"""The frame codec, driven by bytes: what a peer can put on the wire and what we make of it."""

from __future__ import annotations

import itertools
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proto import frames as f
from proto.frames import Frame, FrameDecoder, FrameType, ProtocolError
from proto.messages import Hello, decode_message, encode_message

PREAMBLE = f.encode_preamble()

# Pinned here rather than read from the module: these are the wire format.
ALLOWED_FLAGS = {
    FrameType.DATA: f.FLAG_FIN,
    FrameType.CONTROL: 0,
    FrameType.WINDOW: 0,
    FrameType.RESET: 0,
    FrameType.PING: f.FLAG_ACK,
}


def encode(frame: Frame) -> bytes:
    return f.frame_header(frame.type, frame.flags, frame.stream_id, len(frame.body)) + frame.body


def decode_one(wire: bytes) -> Frame:
    """Decode a preamble plus exactly one frame, fed whole."""
    decoder = FrameDecoder()
    frames = decoder.feed(PREAMBLE + wire)
    assert len(frames) == 1
    assert decoder.buffered == 0
    return frames[0]


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(points)]


@st.composite
def valid_frames(draw: st.DrawFn, max_body: int = 300) -> Frame:
    ftype = draw(st.sampled_from(FrameType))
    flags = draw(st.sampled_from(sorted({0, ALLOWED_FLAGS[ftype]})))
    stream_id = draw(st.integers(0, f.MAX_STREAM_ID))
    body = draw(st.binary(max_size=max_body))
    return Frame(ftype, flags, stream_id, body)


chunk_cuts = st.lists(st.integers(0, 10_000), max_size=30)


# -- roundtrips of every frame type -----------------------------------------------------


@pytest.mark.parametrize("end", [False, True])
def test_data_frame_roundtrip(end: bool) -> None:
    flags = f.FLAG_FIN if end else 0
    body = b"GET / HTTP/1.1\r\nHost: demo.burrow.test\r\n\r\n"
    frame = decode_one(f.frame_header(FrameType.DATA, flags, 6, len(body)) + body)
    assert frame == Frame(FrameType.DATA, flags, 6, body)


def test_empty_data_frame_with_fin_roundtrip() -> None:
    frame = decode_one(f.frame_header(FrameType.DATA, f.FLAG_FIN, 3, 0))
    assert frame == Frame(FrameType.DATA, f.FLAG_FIN, 3, b"")


def test_control_frame_roundtrip() -> None:
    hello = Hello(versions=[1], agent_version="1.4.0", instance_id="i-9", token="tk_live")
    body = encode_message(hello)
    frame = decode_one(f.frame_header(FrameType.CONTROL, 0, 0, len(body)) + body)
    assert (frame.type, frame.flags, frame.stream_id) == (FrameType.CONTROL, 0, 0)
    assert decode_message(frame.body) == hello


@given(stream_id=st.integers(0, f.MAX_STREAM_ID), increment=st.integers(1, 2**32 - 1))
def test_window_frame_roundtrip(stream_id: int, increment: int) -> None:
    frame = decode_one(f.encode_window(stream_id, increment))
    assert (frame.type, frame.flags, frame.stream_id) == (FrameType.WINDOW, 0, stream_id)
    assert f.decode_window(frame.body) == increment


@given(
    stream_id=st.integers(0, f.MAX_STREAM_ID),
    code=st.integers(0, 2**32 - 1),
    reason=st.text(alphabet=st.characters(codec="utf-8"), max_size=300),
)
def test_reset_frame_roundtrip(stream_id: int, code: int, reason: str) -> None:
    frame = decode_one(f.encode_reset(stream_id, code, reason))
    assert (frame.type, frame.flags, frame.stream_id) == (FrameType.RESET, 0, stream_id)
    assert f.decode_reset(frame.body) == (code, reason)


def test_reset_reason_is_capped_at_1024_bytes() -> None:
    frame = decode_one(f.encode_reset(4, f.ResetCode.REFUSED, "x" * 5000))
    assert f.decode_reset(frame.body) == (f.ResetCode.REFUSED, "x" * 1024)


def test_capped_reset_reason_is_a_prefix_of_the_original() -> None:
    reason = "€" * 400  # 1200 bytes; byte 1024 falls inside the 342nd euro sign
    frame = decode_one(f.encode_reset(4, f.ResetCode.REFUSED, reason))
    _code, received = f.decode_reset(frame.body)
    assert reason.startswith(received)


@pytest.mark.parametrize("ack", [False, True])
def test_ping_frame_roundtrip(ack: bool) -> None:
    frame = decode_one(f.encode_ping(b"\x00\x01\x02\x03\xfc\xfd\xfe\xff", ack=ack))
    assert frame == Frame(
        FrameType.PING, f.FLAG_ACK if ack else 0, 0, b"\x00\x01\x02\x03\xfc\xfd\xfe\xff"
    )


def test_header_layout_is_pinned() -> None:
    assert f.frame_header(FrameType.RESET, 0, 0x01020304, 0x0A0B0C0D) == bytes.fromhex(
        "03 00 01020304 0a0b0c0d"
    )
    assert f.HEADER_SIZE == 10
    assert PREAMBLE == b"\x89BRW\r\n\x1a\n" + b"\x00\x01" + b"\x00\x00" + b"\x00\x04\x00\x00"
    assert f.PREAMBLE_SIZE == 16


@pytest.mark.parametrize("body", [b"", b"\x00\x00\x01", b"\x00\x00\x00\x01\x00"])
def test_window_body_of_wrong_length_is_a_protocol_error(body: bytes) -> None:
    with pytest.raises(ProtocolError, match="4 bytes"):
        f.decode_window(body)


def test_window_increment_of_zero_is_a_protocol_error() -> None:
    frame = decode_one(f.encode_window(2, 0))
    with pytest.raises(ProtocolError, match="increment of 0"):
        f.decode_window(frame.body)


def test_reset_body_shorter_than_its_code_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="shorter"):
        f.decode_reset(b"\x00\x00\x01")


# -- preamble ---------------------------------------------------------------------------


def test_preamble_in_pieces_sets_peer_version_once_complete() -> None:
    decoder = FrameDecoder()
    preamble = f.encode_preamble(window=65536)
    assert decoder.feed(preamble[:5]) == []
    assert decoder.peer_version is None
    assert decoder.feed(preamble[5:]) == []
    assert decoder.peer_version == f.PROTOCOL_VERSION
    assert decoder.peer_window == 65536
    assert decoder.buffered == 0


def test_preamble_of_another_protocol_version_is_refused_with_advice() -> None:
    with pytest.raises(ProtocolError, match="upgrade the older"):
        FrameDecoder().feed(f.encode_preamble(7))


@pytest.mark.parametrize("window", [0, (1 << 30) + 1])
def test_preamble_with_absurd_window_is_refused(window: int) -> None:
    with pytest.raises(ProtocolError, match="initial window"):
        FrameDecoder().feed(f.encode_preamble(window=window))


@pytest.mark.parametrize(
    "first_bytes",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",  # a browser pointed at the agent port
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\x5e\x01" + bytes(8),  # TLS hello
        b"\x89BRW\r\n\x1a\x0b\x00\x01\x00\x00\x00\x04\x00\x00",  # magic off by one bit
    ],
    ids=["http", "tls", "near-miss"],
)
def test_bad_preamble_magic_is_a_protocol_error(first_bytes: bytes) -> None:
    decoder = FrameDecoder()
    with pytest.raises(ProtocolError, match="bad preamble magic"):
        decoder.feed(first_bytes)


def test_decoder_without_preamble_reads_frames_at_once() -> None:
    decoder = FrameDecoder(expect_preamble=False)
    assert decoder.peer_version == f.PROTOCOL_VERSION
    assert decoder.feed(f.encode_ping(b"abcdefgh")) == [Frame(FrameType.PING, 0, 0, b"abcdefgh")]


# -- malformed headers ------------------------------------------------------------------


@pytest.mark.parametrize("ftype", [5, 6, 0x7F, 0xFF])
def test_unknown_frame_type_is_a_protocol_error(ftype: int) -> None:
    decoder = FrameDecoder()
    with pytest.raises(ProtocolError, match=f"unknown frame type {ftype}"):
        decoder.feed(PREAMBLE + f.frame_header(ftype, 0, 0, 0))


@pytest.mark.parametrize(
    ("ftype", "flags"),
    [
        (FrameType.DATA, 0x2),
        (FrameType.DATA, 0x80),
        (FrameType.CONTROL, 0x1),
        (FrameType.WINDOW, 0x1),
        (FrameType.RESET, 0x1),
        (FrameType.PING, 0x2),
        (FrameType.PING, 0xFF),
    ],
)
def test_unknown_flags_are_a_protocol_error(ftype: FrameType, flags: int) -> None:
    decoder = FrameDecoder()
    with pytest.raises(ProtocolError, match="unknown flags"):
        decoder.feed(PREAMBLE + f.frame_header(ftype, flags, 0, 0))


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        (f.frame_header(5, 0, 2, 0), "unknown frame type 5"),
        (f.frame_header(FrameType.DATA, 0x2, 2, 0), "unknown flags"),
        (f.frame_header(FrameType.DATA, 0, 2, f.MAX_FRAME_BODY + 1), "exceeds limit"),
    ],
)
def test_a_bad_header_behind_a_partial_frame_is_refused(header: bytes, problem: str) -> None:
    # A read that completes a frame and brings a bad header is gathered behind the partial
    # frame, and read from there: it must be checked all the same, before its body arrives.
    wire = encode(Frame(FrameType.DATA, 0, 2, b"x" * 100))
    decoder = FrameDecoder()
    assert decoder.feed(PREAMBLE + wire[:50]) == []
    with pytest.raises(ProtocolError, match=problem):
        decoder.feed(wire[50:] + header)


@given(
    st.integers(0, 255), st.integers(0, 255), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)
)
def test_frame_header_is_the_pinned_struct_layout(
    ftype: int, flags: int, stream_id: int, length: int
) -> None:
    assert f.frame_header(ftype, flags, stream_id, length) == struct.pack(
        "!BBII", ftype, flags, stream_id, length
    )


@pytest.mark.parametrize(
    "fields", [(256, 0, 0, 0), (0, 256, 0, 0), (0, 0, 2**32, 0), (0, 0, 0, 2**32), (0, 0, -1, 0)]
)
def test_a_header_field_out_of_range_is_not_encoded(fields: tuple[int, int, int, int]) -> None:
    with pytest.raises(ValueError, match="out of range"):
        f.frame_header(*fields)


def test_oversized_body_is_refused_from_the_header_alone() -> None:
    # The decoder must not buffer 4 GiB on a peer's say-so: the header is enough to refuse.
    decoder = FrameDecoder()
    with pytest.raises(ProtocolError, match="exceeds limit"):
        decoder.feed(PREAMBLE + f.frame_header(FrameType.DATA, 0, 2, f.MAX_FRAME_BODY + 1))
    decoder = FrameDecoder()
    with pytest.raises(ProtocolError, match="exceeds limit"):
        decoder.feed(PREAMBLE + f.frame_header(FrameType.DATA, 0, 2, 2**32 - 1))


def test_body_of_exactly_the_limit_is_accepted() -> None:
    body = b"\xab" * f.MAX_FRAME_BODY
    frame = decode_one(f.frame_header(FrameType.DATA, 0, 2, len(body)) + body)
    assert frame.body == body


def test_custom_body_limit_is_enforced() -> None:
    decoder = FrameDecoder(max_body=16)
    assert decoder.feed(PREAMBLE + f.frame_header(FrameType.DATA, 0, 2, 16) + b"x" * 16)
    with pytest.raises(ProtocolError, match="exceeds limit 16"):
        decoder.feed(f.frame_header(FrameType.DATA, 0, 2, 17))


# -- properties over arbitrary splits and arbitrary bytes ---------------------------------


@given(frames=st.lists(valid_frames(), max_size=12), cuts=chunk_cuts)
def test_any_split_decodes_to_the_same_frames(frames: list[Frame], cuts: list[int]) -> None:
    stream = PREAMBLE + b"".join(encode(frame) for frame in frames)
    whole = FrameDecoder().feed(stream)
    assert whole == frames

    decoder = FrameDecoder()
    pieces: list[Frame] = []
    for chunk in split(stream, [c % (len(stream) + 1) for c in cuts]):
        pieces += decoder.feed(chunk)
    assert pieces == frames
    assert decoder.buffered == 0


def test_byte_at_a_time_decodes_to_the_same_frames() -> None:
    frames = [
        Frame(FrameType.CONTROL, 0, 0, encode_message(Hello([1], "1.0", "i", "t"))),
        Frame(FrameType.DATA, 0, 2, b"hello"),
        Frame(FrameType.DATA, f.FLAG_FIN, 2, b""),
        Frame(FrameType.PING, f.FLAG_ACK, 0, b"12345678"),
    ]
    stream = PREAMBLE + b"".join(encode(frame) for frame in frames)
    decoder = FrameDecoder()
    got: list[Frame] = []
    for i in range(len(stream)):
        got += decoder.feed(stream[i : i + 1])
    assert got == frames


@given(frames=st.lists(valid_frames(), min_size=1, max_size=12), cuts=chunk_cuts)
def test_decoder_holds_only_the_incomplete_frame(frames: list[Frame], cuts: list[int]) -> None:
    # Each unit (preamble, then each frame) is handed out as soon as its last byte arrives,
    # and what stays buffered is less than one header plus body.
    units = [PREAMBLE, *(encode(frame) for frame in frames)]
    ends = list(itertools.accumulate(len(unit) for unit in units))
    stream = b"".join(units)
    decoder = FrameDecoder()
    fed = 0
    decoded = 0
    for chunk in split(stream, [c % (len(stream) + 1) for c in cuts]):
        decoded += len(decoder.feed(chunk))
        fed += len(chunk)
        done_units = 0 if decoder.peer_version is None else decoded + 1
        consumed = ends[done_units - 1] if done_units else 0
        assert decoder.buffered == fed - consumed
        if done_units < len(units):
            assert decoder.buffered < len(units[done_units])
    assert decoder.buffered == 0


def test_decoder_memory_stays_bounded_when_frames_never_align_with_reads() -> None:
    # A long-lived link whose reads always end mid-frame never hits the "buffer empty"
    # reset; compaction must still drop consumed bytes. ``buffered`` only counts unread
    # bytes, so this looks at the private buffer to measure memory actually held.
    max_body = 64
    decoder = FrameDecoder(max_body=max_body)
    frame = f.frame_header(FrameType.DATA, 0, 2, 30) + b"d" * 30
    stream = PREAMBLE + frame * 30_000  # 1.2 MB
    bound = 65536 + 2 * (f.HEADER_SIZE + max_body)
    count = 0
    read = 997  # never a multiple of the 40-byte frame
    for start in range(0, len(stream), read):
        count += len(decoder.feed(stream[start : start + read]))
        assert len(decoder._buf) <= bound + read
    assert count == 30_000


@given(with_preamble=st.booleans(), data=st.binary(max_size=600), cuts=chunk_cuts)
def test_random_bytes_raise_only_protocol_error(
    with_preamble: bool, data: bytes, cuts: list[int]
) -> None:
    stream = (PREAMBLE if with_preamble else b"") + data
    decoder = FrameDecoder(max_body=256)
    try:
        for chunk in split(stream, [c % (len(stream) + 1) for c in cuts]):
            for frame in decoder.feed(chunk):
                assert frame.type in ALLOWED_FLAGS
                assert frame.flags & ~ALLOWED_FLAGS[FrameType(frame.type)] == 0
                assert len(frame.body) <= 256
    except ProtocolError:
        pass


@given(
    frames=st.lists(valid_frames(max_body=40), min_size=1, max_size=8),
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)), max_size=4),
    cuts=chunk_cuts,
)
def test_corrupted_valid_stream_raises_only_protocol_error(
    frames: list[Frame], flips: list[tuple[int, int]], cuts: list[int]
) -> None:
    # Random bytes rarely get past the first header; flipping bits in a valid stream
    # reaches the length and body handling too.
    stream = bytearray(PREAMBLE + b"".join(encode(frame) for frame in frames))
    for position, mask in flips:
        stream[position % len(stream)] ^= mask
    decoder = FrameDecoder(max_body=40)
    try:
        for chunk in split(bytes(stream), [c % (len(stream) + 1) for c in cuts]):
            for frame in decoder.feed(chunk):
                assert len(frame.body) <= 40
    except ProtocolError:
        pass
