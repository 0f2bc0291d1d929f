"""Time to first token over HTTP: LLM OS against llama.cpp's server, seen and unseen prompts.

Both servers run at once on the same weights (LLM OS's sealed demo pack, llama-cpp-python's
server on the GGUF it was made from, one thread per core each) and get the same streamed
chat requests from the same client (``bench.openai_stream``), in turns, so load from other
work skews them alike. Three kinds of prompt:

- unseen: a system message that starts with a number no earlier prompt had, and a question:
  nothing to reuse;
- repeated: the same messages as the request just before;
- shared system prompt: a long system prompt every request has, and a new question.

llama.cpp keeps its last prompt's KV cache and reuses the common prefix; LLM OS has its
prefix cache of KV blocks. Without llama-cpp-python's venv (``python -m bench.venvs``)
only LLM OS is measured.

    .venv/bin/python -m bench.llm_ttft [--repeat 5]

Results: ``bench/results/llm_ttft.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import logging
import os
import statistics
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from bench import openai_stream, venvs
from bench.generation import LlmSetup, llamacpp_spec, llmos_spec
from bench.llm_bench import publish
from bench.servers import serving

log = logging.getLogger("bench.llm_ttft")

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "llm_ttft.md"
TOKENS = 8
SYSTEM = ("You are the help desk of a small public library. Answer questions about opening "
          "hours, loans, renewals, fines, the reading room, the children's corner and events. "
          "Be brief and friendly, answer in one or two sentences, and when you do not know "
          "something, say so and suggest asking a librarian at the front desk.")
Messages = list[dict[str, str]]
_unique = itertools.count(1000)


def unseen() -> Messages:
    n = next(_unique)
    return [{"role": "system", "content": f"{n} is the number of this session. {SYSTEM}"},
            {"role": "user", "content": f"Can I renew a book {n % 7 + 2} times?"}]


def shared() -> Messages:
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"Is the library open on day {next(_unique)} of the "
                                        "festival?"}]


def ttft_ms(base: str, model: str, messages: Messages) -> float:
    gen = openai_stream.stream_chat(base, model, messages, TOKENS)
    return openai_stream.timing(gen)[0] * 1000


def measure(base: str, model: str) -> dict[str, float]:
    again = unseen()
    found = {"unseen": ttft_ms(base, model, again)}
    found["repeated"] = ttft_ms(base, model, again)
    found["shared system prompt"] = ttft_ms(base, model, shared())
    return found


def run(setup: LlmSetup, repeat: int) -> str:
    contestants: dict[str, Callable[[], tuple[str, str]]] = {}
    notes = []
    with contextlib.ExitStack() as stack:
        spec, manifest = llmos_spec(setup)
        llmos = stack.enter_context(serving(spec, setup.scratch / "logs"))
        contestants["LLM OS"] = lambda: (llmos.base_url, manifest.name)
        env = venvs.status(setup.venv_root, "llamacpp")
        if env.python is None:
            notes.append(f"llama-cpp-python not measured: {env.reason}")
        else:
            llama = stack.enter_context(serving(llamacpp_spec(env.python),
                                                setup.scratch / "logs"))
            contestants["llama.cpp server"] = lambda: (llama.base_url, "smollm2")
        for target in contestants.values():  # warm-up, and the shared system prompt seen
            ttft_ms(*target(), unseen())
            ttft_ms(*target(), shared())
        load_before = os.getloadavg()[0]
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in contestants}
        for i in range(repeat):
            for name, target in contestants.items():
                runs[name].append(measure(*target()))
                log.info("run %d/%d %s: %s", i + 1, repeat, name, runs[name][-1])
        load_after = os.getloadavg()[0]
    medians = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]}
               for name, rs in runs.items()}
    return report(medians, repeat, (load_before, load_after), notes)


def report(medians: Mapping[str, Mapping[str, float]], repeat: int,
           load: tuple[float, float], notes: Sequence[str]) -> str:
    names = list(medians)
    kinds = list(medians[names[0]])
    lines = ["# LLM time to first token over HTTP, seen and unseen prompts", "",
             f"Streamed chat completions (greedy, {TOKENS} tokens), the same client for both "
             f"servers, in turns; medians of {repeat} runs after a warm-up. Unseen: a system "
             "message starting with a new number; repeated: the messages of the request "
             "before; shared system prompt: the same long system prompt, a new question. "
             f"Load average {load[0]:.1f} before, {load[1]:.1f} after ({os.cpu_count()} "
             "cores; other work skews every figure).", "",
             "| prompt | " + " | ".join(f"{n} TTFT ms" for n in names) +
             (" | LLM OS / llama.cpp |" if len(names) > 1 else " |"),
             "|---|" + "---:|" * (len(names) + (len(names) > 1))]
    for kind in kinds:
        cells = [f"{medians[n][kind]:.0f}" for n in names]
        if len(names) > 1:
            cells.append(f"{medians[names[0]][kind] / medians[names[1]][kind]:.2f}")
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    lines += [f"\n{note}" for note in notes]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--demo", type=Path, default=ROOT / "build" / "demo")
    parser.add_argument("--key", type=Path, default=ROOT / "build" / "keys" / "fleet.key")
    parser.add_argument("--venvs", type=Path, default=ROOT / "build" / "bench-venvs")
    parser.add_argument("--scratch", type=Path, default=ROOT / "build" / "bench" / "ttft")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s: %(message)s")
    setup = LlmSetup(args.demo, args.key, args.venvs, args.scratch)
    publish(run(setup, args.repeat), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
