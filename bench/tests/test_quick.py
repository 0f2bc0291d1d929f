"""The regression guard's arithmetic (no timing: the figures are made up)."""

from __future__ import annotations

from typing import Any

from bench.quick import compare, ratios
from bench.report import LLMOS, RAW


def _results(llmos_rps: float, load_ratio: float) -> dict[str, Any]:
    rows = [{"contestant": name, "concurrency": 8, "rps": rps, "p50_ms": 10.0}
            for name, rps in ((LLMOS, llmos_rps), (RAW, 100.0))]
    return {"tensor": {"rows": rows}, "sealed": {"load_ratio": load_ratio}}


def test_ratios_of_a_results_document() -> None:
    assert ratios(_results(90.0, 1.2)) == {
        "v2 infer / raw, concurrency 8": (0.9, True), "sealed load / plain load": (1.2, False)}
    assert ratios({"tensor": {"error": "x"}}) == {}


def test_within_tolerance_passes_and_beyond_fails() -> None:
    committed = ratios(_results(100.0, 1.0))
    rows, failures = compare(committed, ratios(_results(86.0, 1.17)))
    assert len(rows) == 2 and not failures
    _, failures = compare(committed, ratios(_results(84.0, 1.0)))
    assert failures == ["v2 infer / raw, concurrency 8: 0.84x against 1.00x committed "
                        "(-16%, more than 15% worse)"]
    _, failures = compare(committed, ratios(_results(100.0, 1.19)))  # lower is better here
    assert len(failures) == 1 and failures[0].startswith("sealed load")


def test_a_ratio_not_measured_now_fails() -> None:
    _, failures = compare(ratios(_results(100.0, 1.0)), {})
    assert len(failures) == 2 and all(f.endswith("not measured") for f in failures)
