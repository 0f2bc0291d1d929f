"""LLM engine side by side: LLM OS's engine, a raw onnxruntime loop, transformers.

All three decode greedily from the same 100-token prompt, on the same weights, with the
same number of threads, measured in one run and interleaved (raw, engine, transformers,
then again) so that load from other work skews them alike:

- raw onnxruntime loop: the same pack and session options as the engine, the graph's
  caches bound once, one ``run_with_iobinding`` per step and an argmax; nothing else.
  This is the limit the engine's scheduling, sampling, detokenising and streaming cost
  against.
- LLM OS engine: ``LanguageModel.generate`` in process (continuous batching, one worker
  thread, tokens streamed to asyncio queues), ``ignore_eos`` so every run makes the same
  number of tokens.
- transformers ``generate`` on torch, float32 weights (the dequantised GGUF).

Measured: TTFT (prompt in, first token out), single-stream decode tokens/s (after the
first token), and aggregate tokens/s with 1, 4 and 8 requests at once (all tokens over
the wall time from submission to the last token). Results: ``bench/results/llm_bench.md``.

    .venv/bin/python -m bench.llm_bench [--pack smollm2] [--tokens 64] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from llmos.demo.smollm2 import plain_pack
from llmos.hw.awake import request_latency
from llmos.llm.engine import EngineLimits
from llmos.llm.generation import GenerationRequest
from llmos.llm.model import LanguageModel, load_language_model, with_prepacking
from llmos.llm.sampling import SamplingParams
from llmos.pack import container
from llmos.pack.llm.architecture import (
    INPUT_IDS,
    LOGITS,
    LOGITS_TO_KEEP,
    POSITION_IDS,
    SEQLENS_K,
    TOTAL_SEQUENCE_LENGTH,
    DecoderSpec,
    past_names,
    present_names,
)
from llmos.pack.llm.packinfo import LLMInfo
from llmos.pack.manifest import Manifest
from llmos.runtimes.base import RuntimeOptions

log = logging.getLogger("bench.llm")

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "llm_bench.md"
CONCURRENCY = (1, 4, 8)
PROMPT_TOKENS = 100
THREADS = min(2, os.cpu_count() or 1)
GREEDY = SamplingParams(temperature=0.0)
TEXT = ("The lighthouse stood at the edge of the world, where the grey sea met a sky that "
        "never quite decided between rain and sun. Every evening the keeper climbed the "
        "spiral stairs, counted the steps out of habit, trimmed the wick, polished the lens "
        "and wrote one line in the logbook. Ships passed far out on the horizon; some "
        "answered his light with their horns, most did not. One winter morning, after a "
        "storm that had lasted three days, he found something on the rocks below the tower: "
        "a small machine with one cracked glass eye, humming softly, as if it were trying to "
        "remember a song it had once known by heart. He carried it up the stairs, set it by "
        "the stove, and waited.")


@dataclass(frozen=True)
class Timing:
    ttft_s: float  # prompt submitted -> first token
    decode_tok_s: float  # single stream, tokens after the first per second
    aggregate: Mapping[int, float]  # concurrency -> tokens/s over the wall time
    decoding: Mapping[int, float]  # concurrency -> tokens/s once every request is decoding


# --------------------------------------------------------------------------- loading

def load_pack(pack: Path) -> tuple[Manifest, dict[str, memoryview]]:
    manifest, compressed = container.read_pack(pack)
    payload = container.decompress_into([compressed], manifest)
    return manifest, container.split_files(manifest, payload)


def prepacking() -> bool:
    """Whether the LLM's sessions prepack their weights (as the server does by default)."""
    return with_prepacking(RuntimeOptions()).prepack is True


def prompt_ids(lm: LanguageModel, n: int = PROMPT_TOKENS) -> tuple[int, ...]:
    ids = lm.encode(TEXT)
    assert len(ids) >= n, f"the benchmark text has only {len(ids)} tokens"
    return ids[:n]


# --------------------------------------------------------------------- raw onnxruntime

class RawLoop:
    """The least a decode loop can do with this graph: bound caches, run, argmax."""

    def __init__(self, session: Any, spec: DecoderSpec, capacity: int,
                 max_batch: int = max(CONCURRENCY)) -> None:
        self.session, self.spec, self.capacity = session, spec, capacity
        # Allocated (and paged in) once, as the engine's slot caches are: the graph reads
        # only each row's first seqlens_k + 1 positions, so stale values do no harm.
        self.caches = [np.ones((max_batch, spec.num_kv_heads, capacity, spec.head_dim),
                               np.float32) for _ in range(2 * spec.num_layers)]

    def bind(self, caches: list[np.ndarray], rows: slice, feeds: Mapping[str, np.ndarray],
                 logits: np.ndarray) -> Any:
        b = self.session.io_binding()
        for name, a in feeds.items():
            b.bind_input(name, "cpu", 0, a.dtype.type, list(a.shape), a.ctypes.data)
        b.bind_output(LOGITS, "cpu", 0, np.float32, list(logits.shape), logits.ctypes.data)
        for layer in range(self.spec.num_layers):
            for kind in (0, 1):
                view = caches[2 * layer + kind][rows]
                shape = list(view.shape)
                b.bind_input(past_names(layer)[kind], "cpu", 0, np.float32, shape,
                             view.ctypes.data)
                b.bind_output(present_names(layer)[kind], "cpu", 0, np.float32, shape,
                              view.ctypes.data)
        return b

    def run(self, prompt: Sequence[int], new_tokens: int, batch: int
            ) -> tuple[float, float, float]:
        """``batch`` copies of the prompt: seconds to the first token of row 0, seconds
        for everything, seconds of the decode steps (after every prefill)."""
        s = self.spec
        caches = self.caches
        n = len(prompt)
        keep = np.ones(1, np.int64)
        started = time.perf_counter()
        first: list[int] = []
        ttft = 0.0
        for row in range(batch):
            logits = np.zeros((1, 1, s.vocab_size), np.float32)
            feeds = {INPUT_IDS: np.asarray([prompt], np.int64),
                     POSITION_IDS: np.arange(n, dtype=np.int64)[None],
                     SEQLENS_K: np.array([n - 1], np.int32),
                     TOTAL_SEQUENCE_LENGTH: np.array(n, np.int32), LOGITS_TO_KEEP: keep}
            self.session.run_with_iobinding(self.bind(caches, slice(row, row + 1), feeds,
                                                          logits))
            first.append(int(logits[0, 0].argmax()))
            if row == 0:
                ttft = time.perf_counter() - started
        tokens = np.asarray(first, np.int64).reshape(batch, 1)
        positions = np.full((batch, 1), n, np.int64)
        seqlens = np.full(batch, n, np.int32)
        total = np.array(n + 1, np.int32)
        logits = np.zeros((batch, 1, s.vocab_size), np.float32)
        feeds = {INPUT_IDS: tokens, POSITION_IDS: positions, SEQLENS_K: seqlens,
                 TOTAL_SEQUENCE_LENGTH: total, LOGITS_TO_KEEP: keep}
        binding = self.bind(caches, slice(0, batch), feeds, logits)
        decoding = time.perf_counter()
        for _ in range(new_tokens - 1):
            self.session.run_with_iobinding(binding)
            tokens[:, 0] = logits[:, 0].argmax(axis=-1)
            positions += 1
            seqlens += 1
            total += 1
        end = time.perf_counter()
        return ttft, end - started, end - decoding


def measure_raw(loop: RawLoop, prompt: Sequence[int], new_tokens: int) -> Timing:
    ttft, _, decode = loop.run(prompt, new_tokens, 1)
    runs = {c: loop.run(prompt, new_tokens, c) for c in CONCURRENCY}
    return Timing(ttft, (new_tokens - 1) / decode,
                  {c: c * new_tokens / r[1] for c, r in runs.items()},
                  {c: c * (new_tokens - 1) / r[2] for c, r in runs.items()})


# ---------------------------------------------------------------------------- engine

async def _engine_run(lm: LanguageModel, prompt: tuple[int, ...], new_tokens: int,
                      concurrency: int) -> tuple[float, float, float, float]:
    """TTFT of the first request, its decode seconds after the first token, the wall time,
    and the tokens/s once every request had its first token."""
    started = time.perf_counter()
    gens = [lm.generate(GenerationRequest(prompt, new_tokens, GREEDY, ignore_eos=True))
            for _ in range(concurrency)]
    stamps: list[list[float]] = [[] for _ in gens]

    async def drain(i: int) -> None:
        async for _ in gens[i]:
            stamps[i].append(time.perf_counter())

    await asyncio.gather(*(drain(i) for i in range(concurrency)))
    assert all(len(s) == new_tokens for s in stamps), "a request stopped early"
    end = max(s[-1] for s in stamps)
    all_decoding = max(s[0] for s in stamps)
    later = sum(1 for s in stamps for t in s if t > all_decoding)
    return (stamps[0][0] - started, stamps[0][-1] - stamps[0][0], end - started,
            later / (end - all_decoding))


def measure_engine(lm: LanguageModel, prompt: tuple[int, ...], new_tokens: int) -> Timing:
    ttft, decode, _, _ = asyncio.run(_engine_run(lm, prompt, new_tokens, 1))
    runs = {c: asyncio.run(_engine_run(lm, prompt, new_tokens, c)) for c in CONCURRENCY}
    return Timing(ttft, (new_tokens - 1) / decode,
                  {c: c * new_tokens / r[2] for c, r in runs.items()},
                  {c: r[3] for c, r in runs.items()})


# ---------------------------------------------------------------------- transformers

class HFGenerate:
    def __init__(self, folder: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM

        torch.set_num_threads(THREADS)
        self.torch = torch
        self.model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)

    def seconds(self, prompt: Sequence[int], new_tokens: int, batch: int) -> float:
        torch = self.torch
        ids = torch.tensor([list(prompt)] * batch)
        started = time.perf_counter()
        with torch.inference_mode():
            self.model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                max_new_tokens=new_tokens, min_new_tokens=new_tokens)
        return time.perf_counter() - started


def measure_hf(hf: HFGenerate, prompt: Sequence[int], new_tokens: int) -> Timing:
    """No decoding-phase figure: ``generate`` cannot be timed from outside per phase."""
    ttft = hf.seconds(prompt, 1, 1)
    whole = hf.seconds(prompt, new_tokens, 1)
    batched = {c: hf.seconds(prompt, new_tokens, c) for c in CONCURRENCY}
    return Timing(ttft, (new_tokens - 1) / max(whole - ttft, 1e-9),
                  {c: c * new_tokens / t for c, t in batched.items()}, {})


# ------------------------------------------------------------------------------ runs

def median(timings: Sequence[Timing]) -> Timing:
    return Timing(statistics.median(t.ttft_s for t in timings),
                  statistics.median(t.decode_tok_s for t in timings),
                  {c: statistics.median(t.aggregate[c] for t in timings) for c in CONCURRENCY},
                  {c: statistics.median(t.decoding[c] for t in timings)
                   for c in CONCURRENCY if all(c in t.decoding for t in timings)})


@dataclass(frozen=True)
class Results:
    pack: str
    quantization: str
    new_tokens: int
    repeat: int
    timings: Mapping[str, Timing]
    load_before: float
    load_after: float
    prepacked: bool
    spin_us: int = RuntimeOptions().spin_us  # the setting both onnxruntime contestants ran with
    cores_awake: bool = False  # the CPU latency request held, as LLM OS does while serving


def run(pack_name: str, new_tokens: int, repeat: int, demo: Path,
        with_transformers: bool = True, spin_us: int = RuntimeOptions().spin_us) -> Results:
    pack = plain_pack(pack_name, demo)
    manifest, files = load_pack(pack)
    info = LLMInfo.of(manifest.extra)
    options = RuntimeOptions(intra_op_threads=THREADS, spin_us=spin_us)
    lm = load_language_model(manifest, files, options, EngineLimits(max_running=max(CONCURRENCY)))
    from llmos.runtimes.onnx import open_session

    raw = RawLoop(open_session(manifest, files, with_prepacking(options)), info.decoder,
                  info.context_length)
    hf = HFGenerate(sorted((demo / "work" / "smollm2").glob("*.hf"))[0]) \
        if with_transformers else None
    prompt = prompt_ids(lm)
    contestants: dict[str, Callable[[], Timing]] = {
        "raw onnxruntime loop": lambda: measure_raw(raw, prompt, new_tokens),
        "LLM OS engine": lambda: measure_engine(lm, prompt, new_tokens),
    }
    load_before = os.getloadavg()[0]
    raw.run(prompt, 4, 1)  # warm-up: sessions, binding shapes, cache pages
    asyncio.run(_engine_run(lm, prompt, 4, max(CONCURRENCY)))
    runs: dict[str, list[Timing]] = {name: [] for name in contestants}
    for i in range(repeat):
        for name, measure in contestants.items():
            runs[name].append(measure())
            log.info("run %d/%d %s: %s", i + 1, repeat, name, runs[name][-1])
    if hf is not None:  # an order of magnitude slower: one run, after a short warm-up
        hf.seconds(prompt, 2, 1)
        runs["transformers generate"] = [measure_hf(hf, prompt, new_tokens)]
        log.info("transformers generate: %s", runs["transformers generate"][0])
    lm.close()
    return Results(pack_name, manifest.quantization, new_tokens, repeat,
                   {name: median(t) for name, t in runs.items()}, load_before,
                   os.getloadavg()[0], prepacking(), spin_us)


# ---------------------------------------------------------------------------- report

def report(r: Results) -> str:
    eng, raw = r.timings["LLM OS engine"], r.timings["raw onnxruntime loop"]
    hf = r.timings.get("transformers generate")
    heads = ["contestant", "TTFT ms", "decode tok/s"] + \
        [f"aggregate tok/s @{c}" for c in CONCURRENCY] + \
        [f"decoding tok/s @{c}" for c in CONCURRENCY if c > 1]
    lines = [f"# LLM engine: {r.pack} ({r.quantization}) side by side", "",
             f"{PROMPT_TOKENS}-token prompt, {r.new_tokens} generated tokens (greedy, EOS "
             f"ignored), {THREADS} threads each; onnxruntime contestants: medians of {r.repeat} "
             "interleaved runs after a warm-up, transformers: one run. Aggregate: all "
             "tokens over the wall time from submission (the prefills included); decoding: "
             "tokens/s once every request has its first token. "
             f"Load average {r.load_before:.1f} before, {r.load_after:.1f} after "
             f"({os.cpu_count()} cores; other work on the machine skews every figure). "
             f"onnxruntime weight prepacking: {'on' if r.prepacked else 'OFF (slower)'}; "
             f"pool threads' spin (`spin_us`): {r.spin_us} us; cores kept awake "
             f"(`server.cpu_awake_s`): {'yes' if r.cores_awake else 'no'}.", "",
             "| " + " | ".join(heads) + " |", "|---|" + "---:|" * (len(heads) - 1)]
    for name, t in r.timings.items():
        cells = [f"{t.ttft_s * 1000:.0f}", f"{t.decode_tok_s:.1f}"] + \
            [f"{t.aggregate[c]:.1f}" for c in CONCURRENCY] + \
            [f"{t.decoding[c]:.1f}" if c in t.decoding else "-" for c in CONCURRENCY if c > 1]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    top = max(CONCURRENCY)
    checks = [
        ("single-stream decode, engine / raw loop", eng.decode_tok_s / raw.decode_tok_s,
         ">= 0.9"),
        (f"aggregate @{top} / single stream, engine (prefills included)",
         eng.aggregate[top] / eng.decode_tok_s, ">= 3"),
        (f"decoding @{top} / single stream, engine (all {top} decoding)",
         eng.decoding[top] / eng.decode_tok_s, ">= 3"),
        ("TTFT (100-token prompt), engine / raw prefill", eng.ttft_s / raw.ttft_s, "<= 1.2"),
    ]
    checks += [(f"aggregate @{c}, engine / raw loop", eng.aggregate[c] / raw.aggregate[c], "")
               for c in CONCURRENCY]
    if hf is not None:
        checks += [("single-stream decode, engine / transformers",
                    eng.decode_tok_s / hf.decode_tok_s, ""),
                   ("TTFT, engine / transformers", eng.ttft_s / hf.ttft_s, ""),
                   (f"aggregate @{top}, engine / transformers",
                    eng.aggregate[top] / hf.aggregate[top], "")]
    lines += ["", "| ratio | value | target |", "|---|---:|---|"]
    lines += [f"| {what} | {value:.2f} | {target} |" for what, value, target in checks]
    return "\n".join(lines) + "\n"


def bench_rows(demo: Path, key: Path, max_tokens: int, repeat: int) -> list[dict[str, Any]]:
    """Rows for ``bench/generation.py`` (the suite-wide LLM section)."""
    r = run("smollm2", max_tokens, repeat, demo)
    return [{"contestant": f"{name} (bench/llm_bench.py)", "ttft_ms": t.ttft_s * 1000,
             "decode_tok_s": t.decode_tok_s, "tokens": max_tokens, "runs": repeat,
             "how": "in process, 100-token prompt",
             "weights": "float32 (torch)" if name.startswith("transformers")
             else f"{r.quantization} ONNX pack"} for name, t in r.timings.items()]


def publish(text: str, out: Path) -> None:
    """A report written to ``out`` (its folder made) and to stdout."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    sys.stdout.write(text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pack", default="smollm2", help="smollm2, smollm2-int4, smollm2-fp32")
    parser.add_argument("--tokens", type=int, default=128, help="tokens generated per request")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--demo", type=Path, default=ROOT / "build" / "demo")
    parser.add_argument("--no-transformers", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--spin-us", type=int, default=RuntimeOptions().spin_us,
                        help="the model setting spin_us for both onnxruntime contestants "
                             "(default: LLM OS's, %(default)s)")
    parser.add_argument("--cores-awake", action="store_true",
                        help="hold the CPU latency request at 0 through the run, as a serving "
                             "LLM OS does while requests come (server.cpu_awake_s; root)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s: %(message)s")
    with contextlib.ExitStack() as held:
        if args.cores_awake:
            held.callback(os.close, request_latency(0))
        result = replace(run(args.pack, args.tokens, args.repeat, args.demo,
                             not args.no_transformers, args.spin_us),
                         cores_awake=args.cores_awake)
    text = report(result)
    publish(text, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
