"""What batching buys on the CPU: decode-step time against the rows in the step.

The served SmolLM2 pack's graph, run as the engine runs it (``llmos.llm.decoder.Decoder``
over the pack's session, weights prepacked), one decode step of 1, 2, 4 and 8 rows with
1 and 2 intra-op threads. Every row holds the same context (100 tokens by default) and
each step writes the same position, so the context does not grow while it is measured.

A second table times one projection alone: layer 0's ``gate_up_proj`` and ``down_proj``
``MatMulNBits`` nodes with the pack's own weights and attributes (its float32 4-bit path;
the graph's side product for Q4_1's block offsets left out), and a float32 ``MatMul`` on
the same blocks dequantised (prepacked too), per call. A pack without such nodes (fp32)
gets the first table only.

Rounds interleave every (contestant, rows), the contestants' order reversed every other
round, so load from other work skews them alike; a round's figure is the median of its
steps (after one untimed step of that shape). Printed: the median of the rounds and their
range, the time against one row's, and tokens/s against one row's (rows x one row's time /
this time: 8 rows would be 8 at linear scaling).

    .venv/bin/python -m bench.llm_rows [--rounds 5] [--steps 10] [--context 100]

Results: ``bench/results/llm_rows.md``.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from bench.llm_bench import ROOT, load_pack, publish
from llmos.demo.smollm2 import plain_pack
from llmos.llm.decoder import Decoder
from llmos.llm.model import with_prepacking
from llmos.pack.llm import blockquant
from llmos.pack.llm.packinfo import LLMInfo
from llmos.pack.manifest import Manifest
from llmos.pack.weights import WeightTable, views
from llmos.runtimes.base import RuntimeOptions

log = logging.getLogger("bench.llm_rows")

RESULTS = ROOT / "bench" / "results" / "llm_rows.md"
ROWS = (1, 2, 4, 8)
THREADS = (1, 2)
PROJECTIONS = ("layers.0.gate_up_proj", "layers.0.down_proj")
FIRST_TOKEN = 1000  # the context: tokens FIRST_TOKEN, FIRST_TOKEN + 1, ...

T = TypeVar("T")
Times = dict[tuple[str, int], list[float]]  # (contestant, rows) -> seconds, one per round


# ------------------------------------------------------------------------ measuring

def order(contestants: Sequence[T], rows: Sequence[int], round_: int) -> list[tuple[T, int]]:
    """Round ``round_``'s measuring order: every (contestant, rows) once, the contestants
    in turn (reversed on odd rounds), each through ``rows`` in order."""
    turn = contestants if round_ % 2 == 0 else list(reversed(contestants))
    return [(c, r) for c in turn for r in rows]


def interleave(runners: Mapping[str, Callable[[int], object]], rows: Sequence[int],
               rounds: int, calls: int,
               clock: Callable[[], float] = time.perf_counter) -> Times:
    """Seconds per call of each runner at each number of rows: per round, the median of
    ``calls`` timed calls after one untimed one."""
    times: Times = {(name, r): [] for name in runners for r in rows}
    for i in range(rounds):
        for name, r in order(list(runners), rows, i):
            run = runners[name]
            run(r)
            samples = []
            for _ in range(calls):
                started = clock()
                run(r)
                samples.append(clock() - started)
            times[(name, r)].append(statistics.median(samples))
        log.info("round %d/%d done", i + 1, rounds)
    return times


# ------------------------------------------------------------------------- summing up

@dataclass(frozen=True)
class Figure:
    contestant: str
    rows: int
    median_s: float
    low_s: float
    high_s: float
    vs_one: float  # this time / one row's
    tokens_vs_one: float  # this many rows' tokens/s / one row's


def summarise(times: Mapping[tuple[str, int], Sequence[float]]) -> list[Figure]:
    """Medians and ranges over the rounds, against the same contestant's one-row time."""
    out = []
    for (name, rows), ts in times.items():
        one = statistics.median(times[(name, 1)])
        m = statistics.median(ts)
        out.append(Figure(name, rows, m, min(ts), max(ts), m / one, rows * one / m))
    return out


def table(figures: Sequence[Figure], what: str, unit: str, per: str = "call") -> list[str]:
    """A Markdown table; ``unit`` "ms" or "us" per ``per``."""
    scale = {"ms": 1e3, "us": 1e6}[unit]
    digits = 1 if unit == "ms" else 0
    lines = [f"| {what} | rows | {unit} per {per} | range | per row | x one row | "
             "tokens/s x one row |", "|---|---:|---:|---:|---:|---:|---:|"]
    for f in figures:
        lo, hi = f"{f.low_s * scale:.{digits}f}", f"{f.high_s * scale:.{digits}f}"
        lines.append(f"| {f.contestant} | {f.rows} | {f.median_s * scale:.{digits}f} | "
                     f"{lo}-{hi} | {f.median_s * scale / f.rows:.{digits}f} | "
                     f"{f.vs_one:.2f} | {f.tokens_vs_one:.2f} |")
    return lines


def versus(figures: Sequence[Figure], base: str, other: str) -> list[str]:
    """A Markdown table of ``NAME other, T`` / ``NAME base, T`` medians at each row count
    (contestants named as ``projection_runners`` names them)."""
    median = {(f.contestant, f.rows): f.median_s for f in figures}
    rows = sorted({f.rows for f in figures})
    pairs = [(c, c.replace(f" {base},", f" {other},")) for c in dict.fromkeys(
        f.contestant for f in figures) if f" {base}," in c]
    lines = ["| projection, threads | " + " | ".join(
        f"{r} row{'s' if r > 1 else ''}" for r in rows) + " |",
        "|---|" + "---:|" * len(rows)]
    for a, b in pairs:
        if all((b, r) in median for r in rows):
            lines.append(f"| {a.replace(f' {base},', ',')} | " + " | ".join(
                f"{median[(b, r)] / median[(a, r)]:.2f}" for r in rows) + " |")
    return lines


def report(pack: str, quantization: str, context: int, rounds: int, steps: int,
           calls: int, decode: Sequence[Figure], projections: Sequence[Figure],
           load: tuple[float, float]) -> str:
    lines = [f"# LLM decode step against its rows ({pack}, {quantization})", "",
             f"In process, the pack's graph as the engine runs it (weights prepacked), every "
             f"row at a {context}-token context; medians of {rounds} interleaved rounds, each "
             f"the median of {steps} steps"
             f"{f' ({calls} calls of a projection)' if projections else ''}. Load average "
             f"{load[0]:.1f} before, {load[1]:.1f} after ({os.cpu_count()} cores; other "
             "work skews every figure).", "",
             *table(decode, "threads", "ms", "step")]
    if projections:
        lines += ["", "One projection alone (layer 0, the pack's weights); float32: the same "
                  "blocks dequantised, in a `MatMul`.", "",
                  *table(projections, "projection, threads", "us"), "",
                  "The float32 `MatMul`'s time over the 4-bit path's, at each number of rows:", "",
                  *versus(projections, "4-bit", "float32")]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------ contestants

def step_runner(decoder: Decoder, context: int) -> Callable[[int], object]:
    """One decode step of ``rows`` rows, each at ``context`` cached tokens."""
    return lambda rows: decoder.decode([1] * rows, [context] * rows)


def decoders(manifest: Manifest, files: Mapping[str, memoryview], threads: Sequence[int],
             slots: int, context: int) -> dict[str, Decoder]:
    """One decoder per thread count, every slot prefilled with the same ``context`` tokens."""
    from llmos.runtimes.onnx import open_session

    info = LLMInfo.of(manifest.extra)
    out = {}
    for t in threads:
        session = open_session(manifest, files, with_prepacking(RuntimeOptions(intra_op_threads=t)))
        d = Decoder(session, info.decoder, slots=slots, capacity=info.context_length)
        for slot in range(slots):
            d.prefill(slot, list(range(FIRST_TOKEN, FIRST_TOKEN + context)))
        out[str(t)] = d
    return out


def projection_models(manifest: Manifest, files: Mapping[str, memoryview],
                      names: Sequence[str]) -> dict[str, tuple[bytes, int]]:
    """``NAME 4-bit``: a graph of the pack's ``MatMulNBits`` node ``NAME`` alone, its
    weights and attributes; ``NAME float32``: a ``MatMul`` on its blocks dequantised.
    Each with its input's width (K). Names the graph has no such node for are left out."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = onnx.load_from_string(bytes(files[manifest.entrypoint]))
    table_ = WeightTable.from_extra(manifest.extra)  # the weights file, where the graph
    weights = {} if table_ is None else views(table_, files[table_.file])  # points to it
    inline = {i.name: i for i in graph.graph.initializer if i.name not in weights}
    out = {}
    for name in names:
        node = next((n for n in graph.graph.node
                     if n.name == name and n.op_type == "MatMulNBits"), None)
        if node is None:
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        k, n = attrs["K"], attrs["N"]
        arrays = [np.array(weights[i]) if i in weights else numpy_helper.to_array(inline[i])
                  for i in node.input[1:]]
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, k])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, n])
        inits = [numpy_helper.from_array(a, f"w{i}") for i, a in enumerate(arrays)]
        nbits = helper.make_node("MatMulNBits", ["x", *(i.name for i in inits)], ["y"],
                                 domain="com.microsoft", **attrs)
        blocks = blockquant.Blocks(attrs["bits"], k, n, arrays[0], arrays[1],
                                   arrays[2] if len(arrays) > 2 else None, None)
        dense = [numpy_helper.from_array(blockquant.dequantize(blocks), "w")]
        matmul = helper.make_node("MatMul", ["x", "w"], ["y"])
        short = name.rsplit(".", 1)[-1]
        for kind, op, init in (("4-bit", nbits, inits), ("float32", matmul, dense)):
            model = helper.make_model(helper.make_graph([op], short, [x], [y], init),
                                      opset_imports=list(graph.opset_import))
            out[f"{short} {kind}"] = model.SerializeToString(), k
    return out


def projection_runners(models: Mapping[str, tuple[bytes, int]], threads: Sequence[int],
                       max_rows: int) -> dict[str, Callable[[int], object]]:
    """``NAME, THREADS``: one call of a projection model on ``rows`` rows of inputs."""
    import onnxruntime as ort

    from llmos.runtimes.onnx import session_options

    runners: dict[str, Callable[[int], object]] = {}
    for name, (model, k) in models.items():
        rng = np.random.default_rng(0)  # the same inputs for graphs of the same width
        inputs = {r: rng.standard_normal((r, k)).astype(np.float32)
                  for r in range(1, max_rows + 1)}
        for t in threads:
            so = session_options(RuntimeOptions(intra_op_threads=t, prepack=True))
            s = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
            runners[f"{name}, {t}"] = \
                lambda rows, s=s, inputs=inputs: s.run(None, {"x": inputs[rows]})
    return runners


# ------------------------------------------------------------------------------- run

def run(pack_name: str, demo: Path, rows: Sequence[int], threads: Sequence[int],
        context: int, rounds: int, steps: int, calls: int) -> str:
    manifest, files = load_pack(plain_pack(pack_name, demo))
    load_before = os.getloadavg()[0]
    decs = decoders(manifest, files, threads, max(rows), context)
    decode = summarise(interleave({t: step_runner(d, context) for t, d in decs.items()},
                                  rows, rounds, steps))
    del decs
    projections: list[Figure] = []
    if calls > 0:
        runners = projection_runners(projection_models(manifest, files, PROJECTIONS), threads,
                                     max(rows))
        projections = summarise(interleave(runners, rows, rounds, calls))
    return report(pack_name, manifest.quantization, context, rounds, steps, calls, decode,
                  projections, (load_before, os.getloadavg()[0]))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pack", default="smollm2", help="smollm2, smollm2-int4, smollm2-fp32")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10, help="timed decode steps per round")
    parser.add_argument("--calls", type=int, default=50,
                        help="timed calls of a projection per round (0: no projection table)")
    parser.add_argument("--context", type=int, default=100, help="tokens cached in every row")
    parser.add_argument("--rows", type=int, nargs="+", default=list(ROWS))
    parser.add_argument("--threads", type=int, nargs="+", default=list(THREADS))
    parser.add_argument("--demo", type=Path, default=ROOT / "build" / "demo")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if 1 not in args.rows or min(args.rows) < 1 or args.rounds < 1 or args.steps < 1:
        parser.error("--rows must include 1 (the reference); --rounds and --steps >= 1")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s: %(message)s")
    publish(run(args.pack, args.demo, sorted(set(args.rows)), args.threads, args.context,
                args.rounds, args.steps, args.calls), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
