"""What one load run measured (pure: no I/O).

Every contestant's figures end up as a ``LoadResult``, whether the requests were sent by
wrk over HTTP or by threads calling the model in process, so the report compares like
with like.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class LoadResult:
    """Closed-loop load at a fixed concurrency: throughput and latency percentiles."""

    requests: int
    duration_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    errors: int = 0
    cpu_s: float = 0.0  # CPU seconds the contestant used meanwhile (0: not measured)

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    def to_dict(self) -> dict[str, float | int]:
        return {"requests": self.requests, "duration_s": round(self.duration_s, 3),
                "rps": round(self.rps, 2), "p50_ms": round(self.p50_ms, 3),
                "p90_ms": round(self.p90_ms, 3), "p99_ms": round(self.p99_ms, 3),
                "errors": self.errors, **({"cpu_ms_per_request": round(self.cpu_per_request_ms, 3)}
                                          if self.cpu_s and self.requests else {})}

    @property
    def cpu_per_request_ms(self) -> float:
        return 1000.0 * self.cpu_s / self.requests if self.requests else 0.0


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of ascending values, nearest-rank (as wrk reports)."""
    if not sorted_values:
        raise ValueError("no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be in 0..100, got {q}")
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def summarize(latencies_s: Sequence[float], duration_s: float, errors: int = 0) -> LoadResult:
    """A ``LoadResult`` from per-request latencies (seconds) over a run of ``duration_s``."""
    ordered = sorted(latencies_s)
    ms = [x * 1000.0 for x in ordered]
    return LoadResult(requests=len(ms), duration_s=duration_s, p50_ms=percentile(ms, 50),
                      p90_ms=percentile(ms, 90), p99_ms=percentile(ms, 99), errors=errors)


def combine(runs: Sequence[LoadResult]) -> LoadResult:
    """Several runs of one contestant as one: all requests over all the time (so the rate is
    the overall rate), and the median of each latency percentile across the runs."""
    if not runs:
        raise ValueError("no runs")
    return LoadResult(requests=sum(r.requests for r in runs),
                      duration_s=sum(r.duration_s for r in runs),
                      p50_ms=statistics.median(r.p50_ms for r in runs),
                      p90_ms=statistics.median(r.p90_ms for r in runs),
                      p99_ms=statistics.median(r.p99_ms for r in runs),
                      errors=sum(r.errors for r in runs), cpu_s=sum(r.cpu_s for r in runs))
