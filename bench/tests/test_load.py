from __future__ import annotations

import pytest

from bench.load import LoadResult, combine, percentile, summarize


def test_percentile_is_nearest_rank() -> None:
    values = [float(x) for x in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([7.0], 99) == 7.0


def test_percentile_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_summarize_converts_to_milliseconds_and_rate() -> None:
    result = summarize([0.003, 0.001, 0.002, 0.004], duration_s=2.0, errors=1)
    assert result.requests == 4
    assert result.rps == 2.0
    assert result.p50_ms == pytest.approx(2.0)
    assert result.p99_ms == pytest.approx(4.0)
    assert result.errors == 1


def test_rate_of_an_empty_run_is_zero() -> None:
    assert LoadResult(0, 0.0, 0.0, 0.0, 0.0).rps == 0.0


def test_combine_pools_requests_and_takes_median_percentiles() -> None:
    runs = [LoadResult(100, 5.0, 10.0, 20.0, 30.0), LoadResult(50, 5.0, 40.0, 50.0, 90.0, 2),
            LoadResult(150, 5.0, 20.0, 30.0, 60.0)]
    c = combine(runs)
    assert (c.requests, c.duration_s, c.errors) == (300, 15.0, 2)
    assert c.rps == 20.0
    assert (c.p50_ms, c.p90_ms, c.p99_ms) == (20.0, 30.0, 60.0)
    with pytest.raises(ValueError):
        combine([])


def test_cpu_per_request_is_summed_over_runs() -> None:
    runs = [LoadResult(100, 5.0, 1.0, 2.0, 3.0, cpu_s=0.5), LoadResult(300, 5.0, 1.0, 2.0, 3.0,
                                                                      cpu_s=1.5)]
    c = combine(runs)
    assert c.cpu_s == 2.0 and c.cpu_per_request_ms == 5.0
    assert c.to_dict()["cpu_ms_per_request"] == 5.0
    assert "cpu_ms_per_request" not in LoadResult(10, 1.0, 1.0, 1.0, 1.0).to_dict()
