"""Prefix reuse and chunked prefill, before and after, side by side in one process.

Two engines on the same pack, weights and threads, measured in turns (before, after,
before, after, ...) so that load from other work skews them alike:

- before: the prefix cache off and every prompt prefilled whole (``prefix_cache_mb = 0``,
  a prefill chunk larger than any prompt): the engine as it was;
- after: the model settings' defaults (``llmos.config.ModelConfig``): a prefix cache of
  KV blocks and chunked prefill.

Measured, greedy, in process (``LanguageModel.generate``):

- TTFT of distinct 100-token prompts (a different first token each: nothing to reuse);
- TTFT of a repeated prompt (the same 100 tokens as the request before);
- TTFT of chats sharing a system prompt with the earlier ones (a new question each);
- for these three, the CPU time the process spent (all its threads): on a shared machine
  other work stretches wall time far more than it changes CPU time;
- aggregate tokens/s with 1 and 8 streams on distinct prompts, their prefills included;
- staggered joins: 8 streams with distinct 300-token prompts, one every 0.3 s, so each
  prompt is read while the others decode: aggregate tokens/s and the longest wait of a
  running stream between two of its tokens.

    .venv/bin/python -m bench.llm_prefill [--tokens 64] [--repeat 3]

Results: ``bench/results/llm_prefill.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import itertools
import logging
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path

from bench.llm_bench import GREEDY, ROOT, TEXT, THREADS, load_pack, prompt_ids, publish
from llmos.config import ModelConfig
from llmos.demo.smollm2 import plain_pack
from llmos.llm.backend import engine_limits
from llmos.llm.chat import Message
from llmos.llm.engine import EngineLimits
from llmos.llm.generation import GenerationRequest
from llmos.llm.model import LanguageModel, load_language_model
from llmos.runtimes.base import RuntimeOptions

log = logging.getLogger("bench.llm_prefill")

RESULTS = ROOT / "bench" / "results" / "llm_prefill.md"
STREAMS = 8
STAGGER_S = 0.3
SYSTEM = Message("system", "You are the help desk of a small public library. Answer "
                 "questions about opening hours, loans, renewals, fines, the reading room, "
                 "the children's corner and events. Be brief and friendly, answer in one or "
                 "two sentences, and when you do not know something, say so and suggest "
                 "asking a librarian at the front desk.")
_unique = itertools.count(1000)


def limits(after: bool) -> EngineLimits:
    d = dataclasses.replace(engine_limits(ModelConfig("bench", Path("-"))), max_running=STREAMS)
    return d if after else dataclasses.replace(d, prefill_chunk=1 << 20, prefix_cache_bytes=0)


def distinct(lm: LanguageModel, n: int = 100) -> tuple[int, ...]:
    """``n`` tokens of the bench text after a first token no earlier prompt had."""
    base = prompt_ids(lm, n) if n <= 100 else (lm.encode(TEXT) * (n // 100 + 1))[:n]
    return (next(_unique), *base[1:n])


def chat(lm: LanguageModel) -> tuple[int, ...]:
    question = f"Is the library open on day {next(_unique)} of the festival?"
    return lm.encode(lm.chat_prompt([SYSTEM, Message("user", question)]))


async def _stamps(lm: LanguageModel, ids: tuple[int, ...], tokens: int) -> list[float]:
    out = []
    async for _ in lm.generate(GenerationRequest(ids, tokens, GREEDY, ignore_eos=True)):
        out.append(time.perf_counter())
    return out


async def _ttft(lm: LanguageModel, ids: tuple[int, ...]) -> float:
    started = time.perf_counter()
    return (await _stamps(lm, ids, 1))[0] - started


async def _aggregate(lm: LanguageModel, streams: int, tokens: int, stagger_s: float = 0.0,
                     prompt_tokens: int = 100) -> tuple[float, float]:
    """Tokens/s over the wall time, and the longest gap between two tokens of a stream."""
    started = time.perf_counter()

    async def one(i: int) -> list[float]:
        await asyncio.sleep(i * stagger_s)
        return await _stamps(lm, distinct(lm, prompt_tokens), tokens)

    runs = await asyncio.gather(*(one(i) for i in range(streams)))
    gap = max(b - a for s in runs for a, b in itertools.pairwise(s))
    return streams * tokens / (max(s[-1] for s in runs) - started), gap


async def _cpu(work: Callable[[], Awaitable[float]], times: int = 3) -> tuple[float, float]:
    """Medians of ``work``'s result and of the process CPU milliseconds it took."""
    results, cpu = [], []
    for _ in range(times):
        before = time.process_time()
        results.append(await work())
        cpu.append(1000 * (time.process_time() - before))
    return statistics.median(results), statistics.median(cpu)


async def measure(lm: LanguageModel, tokens: int) -> dict[str, float]:
    """Wall-clock figures, and the process CPU time of the TTFT ones (less skewed by other
    work on the machine than wall time is)."""
    await _ttft(lm, chat(lm))  # the system prompt seen once
    repeated = distinct(lm)
    await _ttft(lm, repeated)
    fresh, fresh_cpu = await _cpu(lambda: _ttft(lm, distinct(lm)))
    again, again_cpu = await _cpu(lambda: _ttft(lm, repeated))
    system, system_cpu = await _cpu(lambda: _ttft(lm, chat(lm)))
    agg1, _ = await _aggregate(lm, 1, tokens)
    agg8, _ = await _aggregate(lm, STREAMS, tokens)
    joined, gap = await _aggregate(lm, STREAMS, tokens, STAGGER_S, 300)
    return {
        "ttft distinct ms": 1000 * fresh, "ttft distinct, CPU ms": fresh_cpu,
        "ttft repeated ms": 1000 * again, "ttft repeated, CPU ms": again_cpu,
        "ttft shared system ms": 1000 * system, "ttft shared system, CPU ms": system_cpu,
        "aggregate tok/s @1": agg1, f"aggregate tok/s @{STREAMS}": agg8,
        f"@{STREAMS} / @1": agg8 / agg1,
        "staggered joins tok/s": joined, "staggered: longest gap ms": 1000 * gap,
    }


def run(pack_name: str, tokens: int, repeat: int, demo: Path) -> str:
    manifest, files = load_pack(plain_pack(pack_name, demo))
    options = RuntimeOptions(intra_op_threads=THREADS)
    engines = {name: load_language_model(manifest, files, options, limits(after))
               for name, after in (("before", False), ("after", True))}
    chat_tokens = len(chat(engines["after"]))
    load_before = os.getloadavg()[0]
    for lm in engines.values():  # warm-up: sessions, binding shapes, cache pages
        asyncio.run(_aggregate(lm, STREAMS, 4))
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in engines}
    for i in range(repeat):
        for name, lm in engines.items():
            runs[name].append(asyncio.run(measure(lm, tokens)))
            log.info("run %d/%d %s: %s", i + 1, repeat, name, runs[name][-1])
    load_after = os.getloadavg()[0]
    for lm in engines.values():
        lm.close()
    medians = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]}
               for name, rs in runs.items()}
    return report(pack_name, manifest.quantization, tokens, repeat, chat_tokens, medians,
                  (load_before, load_after))


def report(pack: str, quantization: str, tokens: int, repeat: int, chat_tokens: int,
           medians: Mapping[str, Mapping[str, float]], load: tuple[float, float]) -> str:
    before, after = medians["before"], medians["after"]
    d = ModelConfig("bench", Path("-"))
    lines = [
        f"# LLM prefill: prefix cache and chunked prefill, before / after ({pack}, "
        f"{quantization})", "",
        f"In process, {THREADS} threads, greedy, EOS ignored, {tokens} generated tokens per "
        f"stream; medians of {repeat} interleaved runs after a warm-up. Before: prefix cache "
        f"off, whole-prompt prefill. After: the defaults (prefix_cache_mb = "
        f"{d.prefix_cache_mb}, prefix_block_tokens = {d.prefix_block_tokens}, prefill_chunk "
        f"= {d.prefill_chunk}). Chat prompts: {chat_tokens} tokens, a shared system prompt "
        f"and a new question each. Staggered: {STREAMS} streams with distinct 300-token "
        f"prompts, one every {STAGGER_S} s. Load average {load[0]:.1f} before, "
        f"{load[1]:.1f} after ({os.cpu_count()} cores; other work skews every figure).", "",
        "| figure | before | after | after / before |", "|---|---:|---:|---:|"]
    for key in before:
        ratio = after[key] / before[key]
        lines.append(f"| {key} | {before[key]:.1f} | {after[key]:.1f} | "
                     f"{ratio:.2f} |" if ratio >= 0.1 else
                     f"| {key} | {before[key]:.1f} | {after[key]:.1f} | {ratio:.4f} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pack", default="smollm2", help="smollm2, smollm2-int4, smollm2-fp32")
    parser.add_argument("--tokens", type=int, default=64, help="tokens generated per stream")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--demo", type=Path, default=ROOT / "build" / "demo")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s: %(message)s")
    publish(run(args.pack, args.tokens, args.repeat, args.demo), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
