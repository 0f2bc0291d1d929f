"""onnxruntime-genai's own generation loop, timed like the servers (run in its venv).

``python -m bench.peers.ortgenai_generate MODEL_DIR MESSAGES_JSON MAX_TOKENS REPEAT`` prints
one JSON line per run: ttft_ms, decode_tok_s, tokens, prompt_tokens (greedy decoding).
"""

from __future__ import annotations

import json
import sys
import time

import onnxruntime_genai as og


def generate(model: og.Model, tokenizer: og.Tokenizer, messages: str,
             max_tokens: int) -> dict[str, float | int]:
    t0 = time.perf_counter()
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True)
    ids = tokenizer.encode(prompt)
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(ids) + max_tokens, do_sample=False)
    generator = og.Generator(model, params)
    generator.append_tokens(ids)
    arrivals: list[float] = []
    while not generator.is_done() and len(arrivals) < max_tokens:
        generator.generate_next_token()
        generator.get_next_tokens()
        arrivals.append(time.perf_counter())
    span = arrivals[-1] - arrivals[0]
    return {"ttft_ms": (arrivals[0] - t0) * 1000.0,
            "decode_tok_s": (len(arrivals) - 1) / span if span > 0 else 0.0,
            "tokens": len(arrivals), "prompt_tokens": len(ids),
            "total_s": arrivals[-1] - t0}


def main(argv: list[str]) -> int:
    folder, messages, max_tokens, repeat = argv[0], argv[1], int(argv[2]), int(argv[3])
    model = og.Model(folder)
    tokenizer = og.Tokenizer(model)
    generate(model, tokenizer, messages, 8)  # warm-up
    for _ in range(repeat):
        print(json.dumps(generate(model, tokenizer, messages, max_tokens)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
