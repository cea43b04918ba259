"""Control messages: the tag table is the wire format and must never drift."""

from __future__ import annotations

import typing

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from proto.messages import (
    MESSAGE_TAGS,
    Bind,
    Hello,
    Message,
    StreamOpen,
    decode_message,
    encode_message,
)

# Never renumber: an agent and an edge of different releases must agree on these.
PINNED_TAGS = {
    "Hello": 1,
    "Welcome": 2,
    "Refused": 3,
    "Bind": 4,
    "Bound": 5,
    "BindFailed": 6,
    "Unbind": 7,
    "StreamOpen": 8,
    "GoAway": 9,
    "Notice": 10,
}

MESSAGE_TYPES = list(MESSAGE_TAGS)

# msgpack carries int64 and uint64.
wire_ints = st.integers(-(2**63), 2**64 - 1)
_FIELD_STRATEGIES: dict[object, st.SearchStrategy[object]] = {
    int: wire_ints,
    str: st.text(max_size=40),
    bool: st.booleans(),
    list[int]: st.lists(wire_ints, max_size=5),
    list[str]: st.lists(st.text(max_size=40), max_size=3),
}


def message_strategy(cls: type[msgspec.Struct]) -> st.SearchStrategy[msgspec.Struct]:
    fields = {field.name: _FIELD_STRATEGIES[field.type] for field in msgspec.structs.fields(cls)}
    return st.builds(cls, **fields)


any_message = st.one_of([message_strategy(cls) for cls in MESSAGE_TYPES])

msgpack_values = st.recursive(
    st.none() | st.booleans() | wire_ints | st.floats() | st.text(max_size=10) | st.binary(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=12,
)


# -- tags -------------------------------------------------------------------------------


def test_message_tags_are_pinned() -> None:
    assert {cls.__name__: tag for cls, tag in MESSAGE_TAGS.items()} == PINNED_TAGS


@pytest.mark.parametrize("cls", MESSAGE_TYPES, ids=lambda cls: cls.__name__)
def test_struct_tag_config_matches_table(cls: type[msgspec.Struct]) -> None:
    config = cls.__struct_config__
    assert isinstance(config, msgspec.structs.StructConfig)
    assert config.tag == PINNED_TAGS[cls.__name__]
    # array_like puts the tag first and the fields after it by position: field order is
    # part of the wire format too.
    assert config.array_like is True


def test_union_holds_exactly_the_tagged_messages() -> None:
    assert set(typing.get_args(Message)) == set(MESSAGE_TAGS)


@given(any_message)
def test_tag_is_the_first_array_element_on_the_wire(message: Message) -> None:
    raw = msgspec.msgpack.decode(encode_message(message))
    assert raw[0] == PINNED_TAGS[type(message).__name__]
    assert len(raw) == 1 + len(msgspec.structs.fields(type(message)))


# -- pinned bytes -----------------------------------------------------------------------


HELLO = Hello(versions=[1], agent_version="1.2.3", instance_id="i-1", token="tok", os="linux")
HELLO_WIRE = b"\x96\x01\x91\x01\xa51.2.3\xa3i-1\xa3tok\xa5linux"

STREAM_OPEN = StreamOpen(tunnel_id=7, kind="http", visitor_addr="203.0.113.9", visitor_port=51234)
STREAM_OPEN_WIRE = b'\x95\x08\x07\xa4http\xab203.0.113.9\xcd\xc8"'


@pytest.mark.parametrize(
    ("message", "wire"),
    [(HELLO, HELLO_WIRE), (STREAM_OPEN, STREAM_OPEN_WIRE)],
    ids=["Hello", "StreamOpen"],
)
def test_encoded_bytes_are_pinned(message: Message, wire: bytes) -> None:
    assert encode_message(message) == wire
    assert decode_message(wire) == message


def test_hello_from_a_newer_agent_with_extra_fields_still_decodes() -> None:
    # A newer agent may append fields to Hello; an older edge must still let it in.
    wire = msgspec.msgpack.encode([1, [1, 2], "2.0.0", "i-1", "tok", "linux", "arm64", 42])
    assert decode_message(wire) == Hello(
        versions=[1, 2], agent_version="2.0.0", instance_id="i-1", token="tok", os="linux"
    )


def test_optional_trailing_fields_take_their_defaults() -> None:
    hello = decode_message(msgspec.msgpack.encode([1, [1], "1.0.0", "i-1", "tok"]))
    assert isinstance(hello, Hello) and hello.os == ""
    assert decode_message(msgspec.msgpack.encode([4, 9, "tcp"])) == Bind(
        request_id=9, protocol="tcp", name="", port=0, local="", pool=False
    )


# -- roundtrip and hostile input ----------------------------------------------------------


@given(any_message)
def test_every_message_type_roundtrips(message: Message) -> None:
    decoded = decode_message(encode_message(message))
    assert type(decoded) is type(message)
    assert decoded == message


@pytest.mark.parametrize(
    "raw",
    [
        [11, "a message from the future"],  # unknown tag
        [1, [1], "1.0.0"],  # Hello missing required fields
        [8, "7", "http", "203.0.113.9", 80],  # tunnel_id of the wrong type
        {"type": 1},  # map, not array
    ],
    ids=["unknown-tag", "too-short", "wrong-type", "not-array"],
)
def test_invalid_messages_raise_validation_error(raw: object) -> None:
    with pytest.raises(msgspec.ValidationError):
        decode_message(msgspec.msgpack.encode(raw))


@given(st.binary(max_size=200))
def test_random_bytes_raise_only_decode_errors(body: bytes) -> None:
    try:
        message = decode_message(body)
    except msgspec.DecodeError:  # ValidationError is a subclass
        return
    assert type(message) in MESSAGE_TAGS


@given(
    tag=st.one_of(st.sampled_from(list(PINNED_TAGS.values())), wire_ints),
    fields=st.lists(msgpack_values, max_size=8),
)
def test_well_formed_msgpack_of_wrong_shape_raises_only_validation_error(
    tag: int, fields: list[object]
) -> None:
    # Random bytes seldom form valid msgpack; this reaches the field validation instead.
    try:
        message = decode_message(msgspec.msgpack.encode([tag, *fields]))
    except msgspec.ValidationError:
        return
    assert MESSAGE_TAGS[type(message)] == tag
