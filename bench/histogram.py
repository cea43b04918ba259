"""A compact latency histogram: fixed memory, O(1) record, ~0.1% precision.

Latencies are recorded in microseconds. Below 2048 µs every microsecond has its own bucket;
above that each power of two is split into 1024 buckets (the top 11 significant bits are
kept), the same log-linear layout HdrHistogram uses. Up to 2**32 µs (71 minutes) that is
23,552 counters, whatever the request count, so a run of millions of requests keeps every
latency rather than a sample.
"""

from __future__ import annotations

_LINEAR = 2048  # 1 µs buckets below this
_SUB = 1024  # buckets per power of two above it
_SUB_BITS = 11  # bit_length of values in [1024, 2047]
_MAX_SHIFT = 32 - _SUB_BITS
_SIZE = _LINEAR + _MAX_SHIFT * _SUB
_MAX_US = (1 << 32) - 1


def _index(us: int) -> int:
    if us < _LINEAR:
        return us
    if us > _MAX_US:
        us = _MAX_US
    shift = us.bit_length() - _SUB_BITS
    return _LINEAR + (shift - 1) * _SUB + ((us >> shift) - _SUB)


def _value(index: int) -> float:
    """The middle of a bucket, in microseconds."""
    if index < _LINEAR:
        return float(index)
    shift = (index - _LINEAR) // _SUB + 1
    mantissa = (index - _LINEAR) % _SUB + _SUB
    return float((mantissa << shift) + (1 << (shift - 1)))


class LatencyHistogram:
    __slots__ = ("count", "counts", "max_us", "sum_us")

    def __init__(self) -> None:
        self.counts = [0] * _SIZE
        self.count = 0
        self.sum_us = 0
        self.max_us = 0

    def record_ns(self, ns: int) -> None:
        us = ns // 1000
        self.counts[_index(us)] += 1
        self.count += 1
        self.sum_us += us
        if us > self.max_us:
            self.max_us = us

    def percentile_us(self, q: float) -> float:
        """The latency at quantile ``q`` (0..1); 0.0 when nothing was recorded."""
        if not self.count:
            return 0.0
        rank = max(1, min(self.count, round(q * self.count)))
        seen = 0
        for index, n in enumerate(self.counts):
            if n:
                seen += n
                if seen >= rank:
                    return min(_value(index), float(self.max_us))
        return float(self.max_us)

    def summary_ms(self) -> dict[str, float]:
        """Mean, p50, p90, p99, p99.9 and max in milliseconds."""
        if not self.count:
            return {}
        out = {"mean": self.sum_us / self.count / 1000}
        for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999)):
            out[name] = self.percentile_us(q) / 1000
        out["max"] = self.max_us / 1000
        return out
