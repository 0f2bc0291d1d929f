"""bench/llm_rows.py's logic: the interleaving, the ratios, the tables, the projection graphs
(no timings asserted: a fake clock, and tiny graphs whose outputs are compared)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from bench import llm_rows
from bench.llm_rows import Figure, interleave, order, summarise, table, versus
from llmos.pack.llm import blockquant
from llmos.pack.manifest import FileEntry, Manifest


def test_order_takes_every_pair_once_and_alternates_the_contestants() -> None:
    assert order(["a", "b"], [1, 2], 0) == [("a", 1), ("a", 2), ("b", 1), ("b", 2)]
    assert order(["a", "b"], [1, 2], 1) == [("b", 1), ("b", 2), ("a", 1), ("a", 2)]
    assert order(["a", "b"], [1, 2], 2) == order(["a", "b"], [1, 2], 0)


class FakeClock:
    """Time moves only when a runner says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_interleave_takes_the_median_of_timed_calls_after_an_untimed_one() -> None:
    clock = FakeClock()
    calls: list[tuple[str, int]] = []
    # seconds each call of (name, rows) takes, in order: the first of a round is untimed
    durations = {("a", 1): [100.0, 1.0, 5.0, 3.0, 100.0, 2.0, 2.0, 2.0],
                 ("a", 4): [100.0, 4.0, 4.0, 4.0] * 2,
                 ("b", 1): [100.0, 6.0, 7.0, 9.0, 100.0, 1.0, 8.0, 8.0],
                 ("b", 4): [100.0, 20.0, 20.0, 20.0] * 2}

    def runner(name: str) -> Callable[[int], object]:
        def run(rows: int) -> None:
            calls.append((name, rows))
            clock.now += durations[(name, rows)].pop(0)
        return run

    times = interleave({"a": runner("a"), "b": runner("b")}, [1, 4], rounds=2, calls=3,
                       clock=clock)
    assert times == {("a", 1): [3.0, 2.0], ("a", 4): [4.0, 4.0],
                     ("b", 1): [7.0, 8.0], ("b", 4): [20.0, 20.0]}
    assert all(not left for left in durations.values())
    assert calls[:8] == [("a", 1)] * 4 + [("a", 4)] * 4
    assert calls[16:24] == [("b", 1)] * 4 + [("b", 4)] * 4  # round 2 starts with "b"


def test_interleave_alternates_across_rounds() -> None:
    seen: list[str] = []
    runners = {n: (lambda rows, n=n: seen.append(n)) for n in ("x", "y")}
    interleave(runners, [1], rounds=2, calls=1, clock=lambda: 0.0)
    assert seen == ["x", "x", "y", "y", "y", "y", "x", "x"]


def test_summarise_against_one_row() -> None:
    times = {("t", 1): [0.010, 0.012, 0.011], ("t", 8): [0.030, 0.020, 0.025]}
    figures = {f.rows: f for f in summarise(times)}
    assert figures[1].vs_one == 1.0 and figures[1].tokens_vs_one == 1.0
    f = figures[8]
    assert (f.median_s, f.low_s, f.high_s) == (0.025, 0.020, 0.030)
    assert f.vs_one == pytest.approx(0.025 / 0.011)
    assert f.tokens_vs_one == pytest.approx(8 * 0.011 / 0.025)


def test_table_rows_in_the_unit_asked() -> None:
    figures = [Figure("2", 1, 0.025, 0.024, 0.027, 1.0, 1.0),
               Figure("2", 8, 0.072, 0.071, 0.0745, 2.88, 2.777)]
    assert table(figures, "threads", "ms") == [
        "| threads | rows | ms per call | range | per row | x one row | tokens/s x one row |",
        "|---|---:|---:|---:|---:|---:|---:|",
        "| 2 | 1 | 25.0 | 24.0-27.0 | 25.0 | 1.00 | 1.00 |",
        "| 2 | 8 | 72.0 | 71.0-74.5 | 9.0 | 2.88 | 2.78 |"]
    assert table(figures[:1], "p", "us")[2] == \
        "| 2 | 1 | 25000 | 24000-27000 | 25000 | 1.00 | 1.00 |"


def test_versus_divides_the_other_kind_by_the_base() -> None:
    def fig(name: str, rows: int, s: float) -> Figure:
        return Figure(name, rows, s, s, s, 1.0, 1.0)

    figures = [fig("up 4-bit, 1", 1, 2e-4), fig("up 4-bit, 1", 8, 7e-4),
               fig("up float32, 1", 1, 3.4e-4), fig("up float32, 1", 8, 4e-4)]
    assert versus(figures, "4-bit", "float32") == [
        "| projection, threads | 1 row | 8 rows |", "|---|---:|---:|",
        "| up, 1 | 1.70 | 0.57 |"]


def test_report_leaves_out_the_projections_when_not_measured() -> None:
    decode = summarise({("1", 1): [0.02], ("1", 2): [0.04]})
    text = llm_rows.report("p", "int4", 100, 1, 2, 0, decode, [], (1.0, 2.0))
    assert "100-token context" in text and "| 1 | 2 | 40.0 |" in text
    assert "| threads | rows | ms per step |" in text
    assert "projection" not in text


def test_main_wants_one_row_as_the_reference() -> None:
    with pytest.raises(SystemExit):
        llm_rows.main(["--rows", "2", "4"])


def test_projection_graphs_agree_and_run() -> None:
    """A pack whose graph holds one MatMulNBits node, its weights inline: the 4-bit graph
    and the float32 one compute the same product, for every row count."""
    from onnx import TensorProto, helper, numpy_helper

    k, n = 64, 48
    rng = np.random.default_rng(1)
    b = blockquant.minmax4(rng.standard_normal((k, n)).astype(np.float32))
    inits = [numpy_helper.from_array(a, name) for a, name in
             ((b.data, "q"), (b.scales, "s"), (b.zero_points, "z"))]
    node = helper.make_node("MatMulNBits", ["h", "q", "s", "z"], ["o"], "layers.0.up",
                            domain="com.microsoft", K=k, N=n, bits=4, block_size=32,
                            accuracy_level=1)
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("h", TensorProto.FLOAT, [None, k])],
        [helper.make_tensor_value_info("o", TensorProto.FLOAT, [None, n])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21),
                                                    helper.make_opsetid("com.microsoft", 1)])
    blob = model.SerializeToString()
    manifest = Manifest("m", "1", "causal-lm", "onnx", (), (),
                        (FileEntry("model.onnx", len(blob), "0" * 64),), "0" * 64, 1, 1)
    models = llm_rows.projection_models(manifest, {"model.onnx": memoryview(blob)},
                                        ["layers.0.up", "layers.0.absent"])
    assert sorted(models) == ["up 4-bit", "up float32"]
    assert {width for _, width in models.values()} == {k}
    runners = llm_rows.projection_runners(models, [1], max_rows=4)
    assert sorted(runners) == ["up 4-bit, 1", "up float32, 1"]
    for rows in (1, 4):
        quant = runners["up 4-bit, 1"](rows)[0]  # type: ignore[index]
        dense = runners["up float32, 1"](rows)[0]  # type: ignore[index]
        assert quant.shape == (rows, n)
        np.testing.assert_allclose(quant, dense, rtol=1e-4, atol=1e-4)
