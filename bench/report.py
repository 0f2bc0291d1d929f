"""Results (the JSON document ``bench.run`` writes) -> a markdown report (pure: no I/O).

The targets (issue 27) are checked here, once: LLM OS v2 infer against raw ``session.run``
in process at >= 0.95x the requests/s at every concurrency, and <= 1 ms added p50 latency
at concurrency 1; a sealed load at <= 1.15x a plaintext load. Beside the rates, the CPU
milliseconds each request cost (the server's processes, or the in-process loop; wrk's own
CPU not counted): on a shared machine the rates follow the other work, the CPU per request
much less.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

RAW = "raw onnxruntime (in process)"  # contestant names, shared with bench.tensor
RAW_OURS = "raw onnxruntime, LLM OS's session settings (in process)"  # its bounded spin
RAWS = (RAW, RAW_OURS)
LLMOS = "llmos"
RATIO_TARGET = 0.95
ADDED_P50_TARGET_MS = 1.0
LOAD_RATIO_TARGET = 1.15


def _verdict(met: bool) -> str:
    return "met" if met else "**missed**"


def _by_key(rows: Sequence[Mapping[str, Any]]) -> dict[tuple[str, int], Mapping[str, Any]]:
    return {(str(r["contestant"]), int(r["concurrency"])): r for r in rows}


def against_raw(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """LLM OS against the in-process limit, per concurrency where both were measured. The
    limit is the faster of the raw loops: onnxruntime's defaults (its pool threads spin
    without bound), and LLM OS's own session settings (a bounded spin), which win on a
    busy machine."""
    table = _by_key(rows)
    out = []
    for c in sorted({int(r["concurrency"]) for r in rows}):
        ours = table.get((LLMOS, c))
        raws = [r for r in (table.get((name, c)) for name in RAWS) if r is not None]
        raw = max(raws, key=lambda r: float(r["rps"])) if raws else None
        if ours is None or raw is None or not raw["rps"]:
            continue
        ratio = float(ours["rps"]) / float(raw["rps"])
        added = float(ours["p50_ms"]) - float(raw["p50_ms"])
        target, met = f">= {RATIO_TARGET:g}x req/s", ratio >= RATIO_TARGET
        if c == 1:
            target += f", <= {ADDED_P50_TARGET_MS:g} ms added p50"
            met = met and added <= ADDED_P50_TARGET_MS
        cpu = {f"{who}_cpu_ms": float(row["cpu_ms_per_request"])
               for who, row in (("llmos", ours), ("raw", raw)) if "cpu_ms_per_request" in row}
        out.append({"concurrency": c, "llmos_rps": ours["rps"], "raw_rps": raw["rps"],
                    "raw": raw["contestant"],
                    "ratio": ratio, "added_p50_ms": added, "target": target, "met": met,
                    **cpu})
    return out


def _cpu(check: Mapping[str, Any]) -> str:
    if "llmos_cpu_ms" not in check or "raw_cpu_ms" not in check:
        return "-"
    ours, raw = check["llmos_cpu_ms"], check["raw_cpu_ms"]
    return f"{ours:.1f} / {raw:.1f} ({ours / raw:.2f}x)" if raw else "-"


def _tensor(doc: Mapping[str, Any]) -> list[str]:
    if "error" in doc:
        return [f"Not measured: {doc['error']}", ""]
    rows = doc["rows"]
    levels = sorted({int(r["concurrency"]) for r in rows})
    names = list(dict.fromkeys(str(r["contestant"]) for r in rows))
    table = _by_key(rows)
    model = doc["model"]
    lines = [f"Model `{model['name']}`: the same ONNX file for every contestant "
             f"({model['onnx_bytes'] / 1e6:.1f} MB, sha256 `{model['sha256'][:12]}`), one "
             f"sentence per request ({doc['body_bytes']} B body). Cells: requests/s "
             "(p50 / p99 latency, ms).", "",
             "| contestant | " + " | ".join(f"concurrency {c}" for c in levels) + " |",
             "|---|" + "---:|" * len(levels)]
    for name in names:
        cells = []
        for c in levels:
            r = table.get((name, c))
            cells.append("-" if r is None else
                         f"{r['rps']:.0f} ({r['p50_ms']:.1f} / {r['p99_ms']:.1f})"
                         + (f", {r['errors']} errors" if r["errors"] else ""))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")
    checks = against_raw(rows)
    if checks:
        lines += ["LLM OS v2 infer against raw `session.run` in process, the faster of its two "
                  "loops at each concurrency (onnxruntime's defaults, or LLM OS's session "
                  "settings: *ours*) (CPU: milliseconds of CPU per request, "
                  "LLM OS's server process against the in-process loop; wrk's own not "
                  "counted):", "",
                  "| concurrency | LLM OS req/s | raw req/s | ratio | added p50 | CPU ms/req "
                  "LLM OS / raw | target | |",
                  "|---:|---:|---:|---:|---:|---:|---|---|"]
        lines += [f"| {x['concurrency']} | {x['llmos_rps']:.0f} | {x['raw_rps']:.0f}"
                  f"{' *ours*' if x.get('raw') == RAW_OURS else ''} | "
                  f"{x['ratio']:.2f}x | {x['added_p50_ms']:+.2f} ms | {_cpu(x)} | "
                  f"{x['target']} | {_verdict(x['met'])} |" for x in checks]
        lines.append("")
    return lines


def _threads(n: Any) -> str:
    return "" if n is None else f", {n} thread{'s' if n != 1 else ''}"


def _sealed(doc: Mapping[str, Any]) -> list[str]:
    if "error" in doc:
        return [f"Not measured: {doc['error']}", ""]
    ratio = float(doc["load_ratio"])
    return [
        f"Model `{doc['model']}` ({doc['plain_onnx_bytes'] / 1e6:.1f} MB ONNX, "
        f"{doc['sealed_bytes'] / 1e6:.1f} MB sealed, payload compression "
        f"`{doc.get('compression', 'zstd')}`); {doc['repeat']} interleaved rounds, medians "
        "(the ratio: the median of the rounds' ratios).", "",
        "| load (every file in the page cache unless said) | ms | ratio |", "|---|---:|---:|",
        f"| plaintext ONNX: `InferenceSession(path)`"
        f"{' + `Tokenizer.from_file`' if doc.get('plain_loads_tokenizer') else ''} | "
        f"{doc['plain_load_ms']:.1f} | 1.00x |",
        f"| sealed: decrypt + decompress + load ({doc['sealed_loader']}) | "
        f"{doc['sealed_load_ms']:.1f} | {ratio:.2f}x |",
        *([f"| CPU of the loads (this process, all threads): sealed / plaintext | "
            f"{doc['sealed_load_cpu_ms']:.1f} / {doc['plain_load_cpu_ms']:.1f} | "
            f"{doc['load_cpu_ratio']:.2f}x |"] if "load_cpu_ratio" in doc else []),
        *([f"| cold page cache (both sides' files dropped just before): plaintext | "
            f"{doc['plain_cold_load_ms']:.1f} | 1.00x |",
           f"| cold page cache: sealed | {doc['sealed_cold_load_ms']:.1f} | "
           f"{doc['cold_load_ratio']:.2f}x |"] if "cold_load_ratio" in doc else []),
        f"| of which decrypt (+ decompress) into one buffer (`open_payload`) | "
        f"{doc['sealed_open_ms']:.1f} | |",
        f"| of which decrypt alone (AES-256-GCM chunks, verified, into a buffer made before) | "
        f"{doc['sealed_decrypt_ms']:.1f} | |", "",
        f"Sealed load target <= {LOAD_RATIO_TARGET:g}x: {_verdict(ratio <= LOAD_RATIO_TARGET)}.",
        "",
        "| AES-256-GCM decrypt | MB/s |", "|---|---:|",
        f"| vault chunks ({doc['decrypt_pack']}, {doc['decrypt_pack_bytes'] / 1e6:.0f} MB, "
        f"{doc['chunk_size'] // 1024} KiB chunks"
        f"{_threads(doc.get('decrypt_threads'))}) | {doc['vault_decrypt_mb_s']:.0f} |",
        f"| `openssl speed -evp aes-256-gcm -decrypt` (same chunk size, one thread) | "
        f"{doc['openssl_decrypt_mb_s']:.0f} |",
        f"| `openssl speed -evp aes-256-gcm` (encrypt, for reference) | "
        f"{doc['openssl_encrypt_mb_s']:.0f} |", "",
        f"The vault decrypts at {doc['decrypt_vs_openssl']:.2f}x openssl's rate.", ""]


def _llm(doc: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    rows = doc.get("rows", [])
    if rows:
        keys = [k for k in ("ttft_ms", "decode_tok_s", "total_s", "tokens") if
                any(k in r for r in rows)]
        heads = {"ttft_ms": "TTFT ms", "decode_tok_s": "decode tokens/s",
                 "total_s": "total s", "tokens": "tokens"}
        lines += ["| contestant | " + " | ".join(heads[k] for k in keys) +
                  " | measured | weights |",
                  "|---|" + "---:|" * len(keys) + "---|---|"]
        for r in rows:
            cells = [f"{r[k]:.1f}" if isinstance(r.get(k), float) else str(r.get(k, "-"))
                     for k in keys]
            lines.append(f"| {r['contestant']} | " + " | ".join(cells) +
                         f" | {r.get('how', '')} | {r.get('weights', '')} |")
        lines.append("")
    if "prompt" in doc:
        served = [r for r in rows if "llm_bench" not in str(r.get("contestant", ""))]
        helper = [r for r in rows if r not in served]
        lines += [f"Greedy decoding of up to {doc['max_tokens']} tokens for the chat prompt "
                  f"\"{doc['prompt']}\"; medians of {_runs(served)} runs after a warm-up"
                  + (f" (the bench/llm_bench.py rows: {_runs(helper)}, on its own 100-token "
                     "prompt)" if helper else "")
                  + ". TTFT over HTTP includes the request; in process it does not. Every run "
                  "sends the same chat, so the servers that keep a prefix cache (LLM OS, "
                  "llama.cpp's) answer it from there: unseen and shared-prefix prompts are in "
                  "`results/llm_ttft.md`.", ""]
    if "error" in doc:
        lines += [f"Not measured: {doc['error']}", ""]
    return lines


def _runs(rows: Sequence[Mapping[str, Any]]) -> str:
    """The rows' run counts, as one number where they agree."""
    counts = sorted({int(r.get("runs", 1)) for r in rows})
    return "/".join(str(c) for c in counts) or "0"


def _notes(results: Mapping[str, Any]) -> list[str]:
    notes = {**results.get("tensor", {}).get("notes", {}), **results.get("llm", {}).get("notes",
                                                                                      {})}
    if not notes:
        return []
    return ["### Not measured, and why", "", *(f"- **{k}**: {v}" for k, v in notes.items()), ""]


def _machine(results: Mapping[str, Any]) -> list[str]:
    m = results["machine"]
    s = results["settings"]
    lines = ["### Machine, versions and settings", "",
             f"- CPU: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB; kernel "
             f"{m['kernel']}; Python {m['python']}",
             f"- load generator: {m['wrk']}, {s['wrk_threads']} thread, "
             f"{s['duration_s']} s measured after {s['warmup_s']} s warm-up per run, "
             f"{s.get('rounds', 1)} interleaved rounds per concurrency (rates over all "
             "rounds, medians of the rounds' percentiles), concurrency "
             f"{', '.join(str(c) for c in s['concurrency'])}; it shares the cores with "
             "the servers", f"- {m['openssl']}"]
    busy = {k: v["load_avg_before"] for k, v in results.items()
            if isinstance(v, dict) and "load_avg_before" in v}
    if busy:
        lines.append("- 1-minute load average before each section (other work on the machine "
                     "skews figures): " + ", ".join(f"{k} {v:.2f}" for k, v in busy.items()))
    for env, versions in results.get("versions", {}).items():
        if versions:
            lines.append(f"- {env}: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    for name, how in results.get("tensor", {}).get("settings", {}).items():
        lines.append(f"- {name}: {how}")
    for name, how in results.get("llm", {}).get("settings", {}).items():
        lines.append(f"- {name}: {how}")
    lines.append(f"- generated {results['generated']} by `make bench`")
    return [*lines, ""]


def render(results: Mapping[str, Any], chart: str = "chart.png") -> str:
    """The report: tensor model, sealed load, LLM, what was not measured, the machine.

    ``chart`` is the PNG's path relative to where the markdown will live.
    """
    not_run = {"error": "not run (see --only)"}
    lines = ["### Tensor model: requests/s and latency", "",
             *_tensor(results.get("tensor", not_run)),
             "### Sealed load", "", *_sealed(results.get("sealed", not_run))]
    if "llm" in results:
        lines += ["### LLM: time to first token and decode speed", "", *_llm(results["llm"])]
    lines += [*_notes(results), *_machine(results), f"![benchmark chart]({chart})", ""]
    return "\n".join(lines)
