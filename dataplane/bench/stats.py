"""Latency summaries through HdrHistogram, shared by every benchmark."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

from hdrh.histogram import HdrHistogram

# 1 ns .. 100 s at 3 significant digits.
_LOW, _HIGH, _DIGITS = 1, 100_000_000_000, 3


@dataclass(frozen=True)
class Summary:
    count: int
    p50_us: float
    p90_us: float
    p99_us: float
    p999_us: float
    max_us: float
    mean_us: float

    def as_dict(self) -> dict:
        return asdict(self)


def histogram(values_ns: Iterable[int]) -> HdrHistogram:
    h = HdrHistogram(_LOW, _HIGH, _DIGITS)
    record = h.record_value
    for v in values_ns:
        record(max(_LOW, min(int(v), _HIGH)))
    return h


def summarize(values_ns: Iterable[int] | HdrHistogram) -> Summary:
    h = values_ns if isinstance(values_ns, HdrHistogram) else histogram(values_ns)
    q = h.get_value_at_percentile
    return Summary(
        count=h.get_total_count(),
        p50_us=q(50) / 1e3,
        p90_us=q(90) / 1e3,
        p99_us=q(99) / 1e3,
        p999_us=q(99.9) / 1e3,
        max_us=h.get_max_value() / 1e3,
        mean_us=h.get_mean_value() / 1e3,
    )


def percentile_curve(h: HdrHistogram, max_nines: int = 4) -> tuple[list[float], list[float]]:
    """(percentiles, µs) points for a percentile plot up to 99.99…%."""
    ps, vs = [], []
    p = 0.0
    while p < 100 - 10 ** -max_nines:
        ps.append(p)
        vs.append(h.get_value_at_percentile(p) / 1e3)
        p = 100 - (100 - p) / 1.25 if p else 10.0
    return ps, vs
