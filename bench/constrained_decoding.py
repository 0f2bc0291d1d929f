"""What constrained decoding (llguidance) costs per token, side by side in one run.

Two measurements on the SmolLM2 demo pack (its real 49,152-token vocabulary):

- the token choice alone (``llmos.llm.decoding.TokenChooser``) on random logit rows:
  greedy without a constraint, with a JSON-schema constraint, with a tool-call grammar
  (mask computed by llguidance, unpacked, applied, token consumed), in microseconds;
- the whole engine, in process: the same prompt decoded greedily without and with the
  JSON-schema constraint, interleaved ``--repeat`` times, in milliseconds per token
  (the constraint's share of a real decode step).

Results: ``bench/results/constrained_decoding.md``.

    .venv/bin/python -m bench.constrained_decoding [--repeat 3] [--tokens 48]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from bench.llm_bench import load_pack, publish
from llmos.demo.smollm2 import plain_pack
from llmos.llm.constraints import Grammar, Grammars
from llmos.llm.decoding import TokenChooser, TokenConstraint
from llmos.llm.engine import EngineLimits
from llmos.llm.generation import GenerationRequest
from llmos.llm.model import LanguageModel, load_language_model
from llmos.llm.sampling import SamplingParams
from llmos.llm.tools import Function, ToolSpec, tool_grammar
from llmos.pack.llm.packinfo import LLMInfo
from llmos.runtimes.base import RuntimeOptions
from llmos.text.tokenizer import Tokenizer

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "constrained_decoding.md"
GREEDY = SamplingParams(temperature=0.0)
SCHEMA = {"type": "object",
          "properties": {"name": {"type": "string", "maxLength": 40},
                         "country": {"type": "string", "maxLength": 40},
                         "population": {"type": "integer"},
                         "landmarks": {"type": "array", "items": {"type": "string"}}},
          "required": ["name", "country", "population", "landmarks"],
          "additionalProperties": False}
WEATHER = Function("get_weather", "The weather in a city.", {
    "type": "object", "properties": {"city": {"type": "string"},
                                     "unit": {"enum": ["celsius", "fahrenheit"]}},
    "required": ["city", "unit"], "additionalProperties": False})
PROMPT = ("<|im_start|>user\nDescribe the city of Lyon as JSON.<|im_end|>\n"
          "<|im_start|>assistant\n")


def choice_cost(grammars: Grammars, grammar: Grammar | None, vocab: int, eos: int,
                tokens: int) -> float:
    """Median microseconds per token choice over random logits (restarting at the end)."""
    rng = np.random.default_rng(0)
    rows = rng.normal(0, 3, (64, vocab)).astype(np.float32)
    times: list[float] = []
    chooser = None
    for i in range(tokens):
        if chooser is None:
            chooser = TokenChooser(GREEDY, constraint=None if grammar is None
                                   else grammars.constraint(grammar))
        start = time.perf_counter()
        t = chooser(rows[i % len(rows)]).token_id
        times.append(time.perf_counter() - start)
        if t == eos:
            chooser = None
    return statistics.median(times) * 1e6


async def _generate(lm: LanguageModel, constraint_of: Callable[[], TokenConstraint | None],
                    tokens: int) -> tuple[float, int]:
    gen = lm.generate(GenerationRequest(lm.encode(PROMPT), tokens, GREEDY,
                                        constraint=constraint_of()))
    first = None
    n = 0
    async for _ in gen:
        n += 1
        if first is None:
            first = time.perf_counter()
    assert first is not None
    return time.perf_counter() - first, n


def engine_cost(lm: LanguageModel, grammars: Grammars, grammar: Grammar, tokens: int,
                repeat: int) -> tuple[float, float]:
    """Median ms per decoded token after the first: (free, constrained)."""
    free: list[float] = []
    bound: list[float] = []
    for _ in range(repeat):
        for out, make in ((free, lambda: None), (bound, lambda: grammars.constraint(grammar))):
            seconds, n = asyncio.run(_generate(lm, make, tokens))
            if n > 1:
                out.append(seconds / (n - 1) * 1e3)
    return statistics.median(free), statistics.median(bound)


def run(demo: Path, tokens: int, repeat: int) -> str:
    manifest, files = load_pack(plain_pack("smollm2", demo))
    info = LLMInfo.of(manifest.extra)
    tok = Tokenizer(files[info.tokenizer])
    eos = info.eos_token_ids[0]
    grammars = Grammars(tok.to_json(), eos)
    start = time.perf_counter()
    _ = grammars.tokenizer
    index_s = time.perf_counter() - start
    start = time.perf_counter()
    schema = grammars.json_schema(SCHEMA)
    compile_ms = (time.perf_counter() - start) * 1e3
    tools = grammars.lark(tool_grammar(ToolSpec((WEATHER,), "required")))
    rows = [(name, choice_cost(grammars, g, tok.vocab_size, eos, 400))
            for name, g in (("greedy, free", None), ("greedy, JSON schema", schema),
                            ("greedy, tool call", tools))]
    lm = load_language_model(manifest, files, RuntimeOptions(intra_op_threads=2),
                             EngineLimits(max_running=1))
    try:
        free_ms, bound_ms = engine_cost(lm, grammars, schema, tokens, repeat)
    finally:
        lm.close()
    lines = [
        "# Constrained decoding cost (llguidance 1.6, SmolLM2-135M int8 demo pack)",
        "",
        f"Command: `python -m bench.constrained_decoding --tokens {tokens} "
        f"--repeat {repeat}`",
        "",
        f"- tokenizer index, once per model: {index_s:.2f} s",
        f"- JSON-schema grammar compile, per request: {compile_ms:.2f} ms",
        "",
        "| token choice (random logits, 49,152 tokens) | median us/token |",
        "|---|---|",
        *[f"| {name} | {us:.0f} |" for name, us in rows],
        "",
        "| engine, greedy decode, 1 sequence | ms/token |",
        "|---|---|",
        f"| free | {free_ms:.2f} |",
        f"| JSON schema enforced | {bound_ms:.2f} |",
        f"| ratio | {bound_ms / free_ms:.2f}x |",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--demo", type=Path, default=ROOT / "build" / "demo")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    text = run(args.demo, args.tokens, args.repeat)
    publish(text, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
