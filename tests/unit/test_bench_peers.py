"""``bench peers``' fixed-rate row, run for real with no peer tunnels: the origin, the edge
and the agent as processes, each row a load generator process of its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import peers
from bench.peers import PeerSettings, format_peers_report, peer_scenarios, run_peers_bench


def test_the_fixed_rate_row_loads_direct_and_burrow_at_that_rate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(peers, "make_peers", lambda log_dir, start_timeout: [])
    settings = PeerSettings(duration=1.0, warmup=0.2, connections=4, rate=300.0, quick=True)
    run = run_peers_bench(settings, tmp_path)
    assert not run.troubled, run.notes
    assert [s.key for s in run.scenarios] == ["small", "download", "rate"]
    fixed = {m.target: m.result for m in run.measurements if m.scenario.key == "rate"}
    assert set(fixed) == {"direct", "burrow"}
    for result in fixed.values():
        assert result.rate == 300.0
        # Served at the rate asked for, not as fast as it could: a closed loop over four
        # connections does thousands a second here.
        assert 0.8 * 300 <= result.requests_per_second <= 1.2 * 300
        assert result.errors == 0 and result.unsent == 0
    closed = [m.result for m in run.measurements if m.scenario.key == "small"]
    assert closed and all(r.rate == 0 for r in closed)
    report = format_peers_report(run)
    assert "1 KiB at 300/s, 4 conns" in report and "charged for the wait" in report


def test_rate_zero_leaves_the_fixed_rate_row_out() -> None:
    assert [s.key for s in peer_scenarios(PeerSettings(rate=0.0))] == ["small", "download"]
    (fixed,) = [s for s in peer_scenarios(PeerSettings(rate=2000.0)) if s.rate]
    assert fixed.key == "rate" and fixed.title == "1 KiB at 2,000/s, 50 conns"
