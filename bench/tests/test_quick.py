"""The regression guard's arithmetic (no timing: the figures are made up)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, cast

import pytest

from bench import quick, run, slowed, tensor
from bench.model_folder import ModelFolder
from bench.quick import compare, ratios
from bench.report import LLMOS, RAW, RAW_OURS


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


def _tensor(ratio_by_c: dict[int, float]) -> dict[str, Any]:
    rows = [{"contestant": name, "concurrency": c, "rps": rps, "p50_ms": 10.0}
            for c, r in ratio_by_c.items() for name, rps in ((LLMOS, 100.0 * r), (RAW, 100.0))]
    return {"rows": rows, "load_avg_before": 0.5}


class FakeBench:
    """Stands for ``run.run``: hands out made-up results, one per call, and records what
    each call measured."""

    def __init__(self, *runs: dict[str, Any]) -> None:
        self.runs = list(runs)
        self.sections: list[tuple[str, ...]] = []

    def __call__(self, opts: run.Options) -> dict[str, Any]:
        self.sections.append(opts.sections)
        doc = self.runs.pop(0)
        return {k: v for k, v in doc.items() if k in opts.sections or k == "generated"}


def _doc(c1: float, sealed: float) -> dict[str, Any]:
    return {"generated": "now", "tensor": _tensor({1: c1, 8: 1.0}),
            "sealed": {"load_ratio": sealed, "load_avg_before": 0.5}}


def _reference(tmp_path: Path) -> Path:
    path = tmp_path / "quick.json"
    path.write_text(json.dumps(quick.reference_doc(_doc(1.0, 1.2), "test")))
    return path


def test_record_writes_the_ratios_with_the_load(tmp_path: Path) -> None:
    path = tmp_path / "quick.json"
    assert quick.main(["--record", "--reference", str(path), "--out", str(tmp_path)],
                      measure=FakeBench(_doc(0.9, 1.2))) == 0
    ratios_, doc = quick.read_reference(path)
    assert ratios_ == {"v2 infer / raw, concurrency 1": (0.9, True),
                       "v2 infer / raw, concurrency 8": (1.0, True),
                       "sealed load / plain load": (1.2, False)}
    assert doc["load_avg_before"] == {"tensor": 0.5, "sealed": 0.5}


def test_the_current_ratios_pass(tmp_path: Path) -> None:
    bench = FakeBench(_doc(0.95, 1.25))
    assert quick.main(["--reference", str(_reference(tmp_path)), "--out", str(tmp_path)],
                      measure=bench) == 0
    assert bench.sections == [("tensor", "sealed")]  # no second run


def test_a_slowdown_fails_after_measuring_again(tmp_path: Path) -> None:
    bench = FakeBench(_doc(0.5, 1.2), _doc(0.55, 9.9))
    assert quick.main(["--reference", str(_reference(tmp_path)), "--out", str(tmp_path)],
                      measure=bench) == 1
    assert bench.sections == [("tensor", "sealed"), ("tensor",)]  # only what looked worse


def test_a_busy_moment_that_passes_the_second_time_is_no_regression(tmp_path: Path) -> None:
    bench = FakeBench(_doc(0.5, 2.0), _doc(0.97, 1.21))
    assert quick.main(["--reference", str(_reference(tmp_path)), "--out", str(tmp_path)],
                      measure=bench) == 0
    assert bench.sections == [("tensor", "sealed"), ("tensor", "sealed")]


def test_the_better_of_two_runs_counts() -> None:
    assert quick.best({"a": (0.5, True), "b": (2.0, False)},
                      {"a": (0.9, True), "b": (3.0, False), "c": (1.0, True)}) == {
        "a": (0.9, True), "b": (2.0, False), "c": (1.0, True)}


def test_the_slowdown_reaches_the_llmos_command(tmp_path: Path) -> None:
    opts = quick.options(tmp_path, tmp_path, tmp_path / "key", 30.0)
    setup = tensor.TensorSetup(cast(ModelFolder, None), tmp_path / "x.sealed", opts.key,
                               opts.venv_root, opts.scratch, opts.concurrency, opts.load,
                               opts.rounds, slowdown_ms=opts.slowdown_ms)
    spec = tensor.llmos_spec(setup)
    assert list(spec.argv[:4]) == [sys.executable, "-m", "bench.slowed", "30"], spec.argv
    assert list(spec.argv[4:6]) == ["serve", "--config"] and spec.cwd == tensor.ROOT
    assert quick.sections_of(["sealed load / plain load: 2x"]) == ("sealed",)


def test_the_slowed_server_sleeps_in_every_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    from llmos.serving.batcher import Batcher

    monkeypatch.setattr(Batcher, "_call", Batcher.__dict__["_call"])  # restored afterwards
    slowed.slow_down(50)
    t0 = time.perf_counter()
    assert Batcher._call(lambda inputs: {"y": inputs["x"]}, {"x": 1}) == {"y": 1}  # type: ignore[arg-type, dict-item]
    assert time.perf_counter() - t0 >= 0.05


def test_cpu_per_request_is_compared_with_the_raw_loop_without_spinning() -> None:
    rows = [{"contestant": name, "concurrency": 1, "rps": 100.0, "p50_ms": 10.0,
             "cpu_ms_per_request": cpu}
            for name, cpu in ((LLMOS, 9.0), (RAW, 14.0), (RAW_OURS, 7.5))]
    got = ratios({"tensor": {"rows": rows}})
    assert got["v2 infer CPU per request / raw's, concurrency 1"] == (1.2, False)
    rows[0]["cpu_ms_per_request"] = 9.0 * 1.2  # 20 % more CPU per request: a regression
    _, failures = compare(got, ratios({"tensor": {"rows": rows}}))
    assert failures == ["v2 infer CPU per request / raw's, concurrency 1: 1.44x against "
                        "1.20x committed (-17%, more than 15% worse)"]


def test_rates_are_compared_at_a_comparable_load_only() -> None:
    assert quick.comparable_load(0.5, 1.9, cores=2)  # both quiet
    assert not quick.comparable_load(13.0, 15.0, cores=2)  # 1.06x against 1.46x, same code
    assert not quick.comparable_load(15.0, 2.5, cores=2)
    assert not quick.comparable_load(0.3, 3.0, cores=2)
    assert quick.comparable_load(None, 3.0, cores=2)
    reference = {"v2 infer / raw, concurrency 1": (1.5, True),
                 "v2 infer CPU per request / raw's, concurrency 1": (1.1, False)}
    busy = {"generated": "now", "tensor": {**_tensor({1: 0.8}), "load_avg_before": 15.0}}
    for row in busy["tensor"]["rows"]:
        row["cpu_ms_per_request"] = 8.0
    busy["tensor"]["rows"].append({"contestant": RAW_OURS, "concurrency": 1, "rps": 90.0,
                                   "p50_ms": 10.0, "cpu_ms_per_request": 8.0 / 1.1})
    opts = quick.options(Path("/tmp"), Path("/tmp"), Path("/tmp/key"), 0.0)
    rows, failures, notes = quick.check(reference, FakeBench(busy), opts, reference_load=0.4)
    assert not failures and len(rows) == 1  # the CPU ratio only
    assert "rates not compared (load 15.0 now, 0.4" in notes[-1]
    busy["tensor"]["load_avg_before"] = 1.5
    _, failures, _ = quick.check(reference, FakeBench(busy, busy), opts, reference_load=0.4)
    assert failures and failures[0].startswith("v2 infer / raw, concurrency 1")
