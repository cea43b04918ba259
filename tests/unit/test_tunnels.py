"""Tunnel addresses as users type them, and the latency sample behind the status line."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.tunnels import SpecError, TunnelSpec, TunnelStats, parse_address


@pytest.mark.parametrize(
    ("addr", "expected"),
    [
        ("8000", ("localhost", 8000)),
        (8000, ("localhost", 8000)),
        (" 8000 ", ("localhost", 8000)),
        ("localhost:8000", ("localhost", 8000)),
        ("127.0.0.1:3000", ("127.0.0.1", 3000)),
        ("[::1]:8000", ("::1", 8000)),
        (":8000", ("localhost", 8000)),
        ("1", ("localhost", 1)),
        ("65535", ("localhost", 65535)),
    ],
)
def test_parse_address(addr: str | int, expected: tuple[str, int]) -> None:
    assert parse_address(addr) == expected


@pytest.mark.parametrize(
    ("addr", "hint"),
    [
        ("0", "1 to 65535"),
        ("70000", "1 to 65535"),
        ("65536", "1 to 65535"),
        ("abc", "1 to 65535"),
        ("", "1 to 65535"),
        ("localhost:", "1 to 65535"),
        ("-1", "1 to 65535"),
        ("http://x", "without a scheme"),
        ("[::1]8000", "[::1]:8000"),
        ("[::1", "[::1]:8000"),
    ],
)
def test_bad_addresses_say_how_to_write_them(addr: str, hint: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_address(addr)
    assert hint in str(info.value)


def test_url_with_scheme_and_port_is_refused() -> None:
    with pytest.raises(SpecError, match="without a scheme"):
        parse_address("http://x:80")


def test_non_ascii_digit_is_a_spec_error() -> None:
    with pytest.raises(SpecError):
        parse_address("²")


@given(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30))
def test_parse_address_returns_a_valid_port_or_spec_error(addr: str) -> None:
    try:
        host, port = parse_address(addr)
    except SpecError:
        return
    assert 0 < port < 65536
    assert host


@pytest.mark.parametrize(
    ("host", "port", "local"),
    [
        ("localhost", 8000, "localhost:8000"),
        ("10.0.0.5", 22, "10.0.0.5:22"),
        ("::1", 8000, "[::1]:8000"),
    ],
)
def test_tunnel_spec_local_is_a_dialable_address(host: str, port: int, local: str) -> None:
    spec = TunnelSpec("http", host, port)
    assert spec.local == local
    assert parse_address(spec.local) == (host, port)


def test_percentile_of_no_samples_is_none() -> None:
    assert TunnelStats().percentile(0.5) is None


def test_percentile_picks_from_recorded_latencies() -> None:
    stats = TunnelStats()
    values = [n / 1000 for n in range(1, 101)]
    for v in random.Random(7).sample(values, len(values)):
        stats.record_latency(v)
    assert stats.percentile(0.0) == 0.001
    assert stats.percentile(1.0) == 0.1
    assert stats.percentile(0.5) in (0.05, 0.051)
    assert stats.percentile(0.99) in (0.099, 0.1)


@given(st.lists(st.floats(0, 60, allow_nan=False), min_size=1, max_size=50), st.floats(0, 1))
def test_percentile_lies_within_the_samples(samples: list[float], q: float) -> None:
    stats = TunnelStats()
    for s in samples:
        stats.record_latency(s)
    p = stats.percentile(q)
    assert p is not None
    assert min(samples) <= p <= max(samples)
    assert stats.percentile(0.0) == min(samples)
    assert stats.percentile(1.0) == max(samples)


def test_latency_sample_stays_bounded_and_follows_recent_requests() -> None:
    stats = TunnelStats()
    for _ in range(5000):
        stats.record_latency(0.010)
    for _ in range(5000):
        stats.record_latency(2.0)  # the service got slow
    assert stats.percentile(0.5) == 2.0
    assert len(stats._latencies) <= 512
