"""Tensor model side by side: LLM OS v2 infer, raw onnxruntime in process, FastAPI, MLServer.

Every server gets the same model (``model_folder``), the same request body and the same
wrk load; the in-process loop runs the same ``Embedder`` the peers use, without HTTP. Each
server's answer is checked against the in-process embedding before it is measured, so a
contestant that computes something else is reported, not ranked.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from bench import inprocess, venvs, wrk
from bench.load import LoadResult, combine
from bench.model_folder import ModelFolder
from bench.peers.embedder import Embedder
from bench.report import LLMOS, RAW, RAW_OURS
from bench.servers import ServerError, ServerSpec, free_port, http_status, serving
from llmos.runtimes.base import RuntimeOptions

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
SENTENCE = ("LLM OS decrypts sealed model packs in memory and serves them over the Open "
            "Inference Protocol.")
MIN_COSINE = 0.999


@dataclass(frozen=True)
class Variant:
    """This tree's LLM OS with other settings, as contestant ``llmos LABEL``: TOML lines
    for its ``[server]`` table and for the model's ``[[models]]`` entry."""

    label: str
    server: str = ""
    model: str = ""

    @classmethod
    def parse(cls, text: str) -> Variant:
        """``LABEL=KEY=VALUE[,KEY=VALUE]`` (TOML values without commas); a ``server.KEY``
        goes to the server's table, any other key to the model's entry."""
        label, _, settings = text.partition("=")
        server, model = [], []
        for setting in settings.split(","):
            key, _, value = (part.strip() for part in setting.partition("="))
            section, dot, name = key.partition(".")
            if dot and section == "server":
                server.append(f"{name} = {value}\n")
            else:
                model.append(f"{key} = {value}\n")
        return cls(label, "".join(server), "".join(model))


@dataclass(frozen=True)
class TensorSetup:
    model: ModelFolder
    sealed: Path
    key: Path
    venv_root: Path
    scratch: Path  # configs, bodies, server logs
    concurrency: tuple[int, ...]
    load: wrk.WrkSettings
    rounds: int = 3
    model_name: str = "minilm"
    slowdown_ms: float = 0.0  # added to every LLM OS inference (``bench.slowed``)
    # other LLM OS trees measured beside this one (label, its userland/ directory): a
    # change against main, side by side in one run
    compare: tuple[tuple[str, Path], ...] = ()
    # this tree's LLM OS again with other settings: a setting's effect, side by side
    variants: tuple[Variant, ...] = ()


def request_body(input_name: str, texts: Sequence[str]) -> bytes:
    """One v2 infer request with a BYTES input (pure)."""
    return json.dumps({"inputs": [{"name": input_name, "datatype": "BYTES",
                                   "shape": [len(texts)], "data": list(texts)}]}).encode()


def first_output(response: bytes) -> np.ndarray:
    """The first output tensor of a v2 infer response, shaped (pure)."""
    out = json.loads(response)["outputs"][0]
    return np.asarray(out["data"], dtype=np.float32).reshape(out["shape"])


def rotated(names: Sequence[str], shift: int) -> list[str]:
    """``names`` starting at position ``shift`` (mod length): each round another goes first."""
    if not names:
        return []
    k = shift % len(names)
    return [*names[k:], *names[:k]]


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b / denom) if denom else math.nan


# ------------------------------------------------------------------------------ contestants

def ready_path(setup: TensorSetup) -> str:
    """The model's own readiness (a server may be ready before its model is loaded)."""
    return f"/v2/models/{setup.model_name}/ready"


def llmos_spec(setup: TensorSetup, label: str = "", userland: Path | None = None,
               variant: Variant | None = None) -> ServerSpec:
    """LLM OS serving the sealed pack with its defaults (the contestant ``llmos LABEL``);
    ``userland``: another tree's code, ``variant``: other settings."""
    variant = variant or Variant(label)
    port = free_port()
    suffix = f"-{label}" if label else ""
    state = setup.scratch / f"llmos-state{suffix}"
    state.mkdir(parents=True, exist_ok=True)
    config = setup.scratch / f"llmos{suffix}.toml"
    config.write_text(
        "[server]\n"
        f'host = "127.0.0.1"\nport = {port}\nadmin_port = {free_port()}\n'
        f'state_dir = "{state}"\npacks_dir = "{setup.sealed.parent}"\nlog_level = "WARNING"\n'
        f"{variant.server}[keys]\n"
        f'provider = "keyfile"\nkeyfile = "{setup.key.resolve()}"\nallow_dev_key = true\n'
        "[[models]]\n"
        f'name = "{setup.model_name}"\npack = "{setup.sealed.resolve()}"\n{variant.model}')
    llmos = [str(Path(sys.executable).with_name("llmos"))]
    if setup.slowdown_ms:
        llmos = [sys.executable, "-m", "bench.slowed", f"{setup.slowdown_ms:g}"]
    env = {} if userland is None else {"PYTHONPATH": str(userland.resolve())}
    return ServerSpec(f"{LLMOS} {label}" if label else LLMOS,
                      [*llmos, "serve", "--config", str(config)], port,
                      ready_path=ready_path(setup), env=env,
                      cwd=ROOT if setup.slowdown_ms else None)


def fastapi_spec(setup: TensorSetup, python: Path) -> ServerSpec:
    port = free_port()
    return ServerSpec(
        "fastapi", [str(python), "-m", "uvicorn", "bench.peers.fastapi_service:app",
                    "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                    "--no-access-log", "--log-level", "warning"],
        port, ready_path=ready_path(setup), cwd=ROOT,
        env={"BENCH_MODEL_DIR": str(setup.model.path), "PYTHONPATH": str(ROOT),
             "BENCH_MODEL_NAME": setup.model_name})


def mlserver_spec(setup: TensorSetup, python: Path) -> ServerSpec:
    port = free_port()
    repo = setup.scratch / "mlserver"
    (repo / setup.model_name).mkdir(parents=True, exist_ok=True)
    (repo / "settings.json").write_text(json.dumps({
        "debug": False, "http_port": port, "grpc_port": free_port(),
        "metrics_port": free_port(), "parallel_workers": 1}, indent=1))
    (repo / setup.model_name / "model-settings.json").write_text(json.dumps({
        "name": setup.model_name,
        "implementation": "bench.peers.mlserver_runtime.EmbeddingRuntime",
        "parameters": {"uri": str(setup.model.path)}}, indent=1))
    # its CLI module, not the bin/mlserver script: a venv moved or copied keeps a script
    # whose #! line names the old place
    return ServerSpec("mlserver", [str(python), "-m", "mlserver.cli.main", "start", str(repo)],
                      port,
                      ready_path=ready_path(setup), env={"PYTHONPATH": str(ROOT)}, cwd=repo)


OUR_SPIN_US = RuntimeOptions().spin_us  # the model setting's default (a test holds them equal)
SETTINGS = {
    LLMOS: "defaults: 1 instance, dynamic batching (max 8 rows, 2 ms), ORT default threads",
    "fastapi": "1 uvicorn worker (uvloop, httptools), sync endpoint in FastAPI's thread pool",
    "mlserver": "parallel_workers=1 (its default), debug off, custom MLModel runtime",
    RAW: "N Python threads calling the shared Embedder (tokenize + session.run + pool)",
    RAW_OURS: f"the same with LLM OS's default spin_us = {OUR_SPIN_US} (pool threads "
              "busy-wait at most that many microseconds for more work)",
}


PEERS: tuple[tuple[str, str, Callable[[TensorSetup, Path], ServerSpec]], ...] = (
    ("fastapi", "peers", fastapi_spec),
    ("mlserver", "mlserver", mlserver_spec),
)


def _contestants(setup: TensorSetup) -> tuple[list[tuple[str, Callable[[], ServerSpec]]],
                                               dict[str, str]]:
    """The servers that can run here, and a note for each that cannot (its venv failed)."""
    ready: list[tuple[str, Callable[[], ServerSpec]]] = [(LLMOS, partial(llmos_spec, setup))]
    ready += [(f"{LLMOS} {label}", partial(llmos_spec, setup, label, path))
              for label, path in setup.compare]
    ready += [(f"{LLMOS} {v.label}", partial(llmos_spec, setup, v.label, None, v))
              for v in setup.variants]
    notes: dict[str, str] = {}
    for name, venv, make in PEERS:
        env = venvs.status(setup.venv_root, venv)
        if env.python is None:
            notes[name] = f"not measured: {env.reason}"
        else:
            ready.append((name, partial(make, setup, env.python)))
    return ready, notes


# ------------------------------------------------------------------------------ measuring

Measure = Callable[[int], LoadResult]  # concurrency -> one warmed-up, timed run


def _rows(results: Mapping[tuple[str, int], Sequence[LoadResult]]) -> list[dict[str, Any]]:
    return [{"contestant": name, "concurrency": c, "rounds": len(runs),
             **combine(runs).to_dict()} for (name, c), runs in results.items()]


def _check(name: str, url: str, body: bytes, reference: np.ndarray) -> float:
    """The server's embedding of the benchmark sentence must be onnxruntime's."""
    status, answer = http_status(url, body, timeout_s=60)
    if status != 200:
        raise ServerError(f"{name} answered {status}: {answer[:300]!r}")
    agree = cosine(first_output(answer), reference)
    if not agree >= MIN_COSINE:
        raise ServerError(f"{name}'s embedding differs from onnxruntime's (cosine {agree:.4f})")
    return agree


def _start_servers(setup: TensorSetup, stack: contextlib.ExitStack, body: Path,
                   reference: np.ndarray, notes: dict[str, str],
                   agreement: dict[str, float]) -> dict[str, Measure]:
    """Every server that starts and answers correctly, kept running until ``stack`` closes."""
    contestants, unavailable = _contestants(setup)
    notes.update(unavailable)
    measures: dict[str, Measure] = {}
    for name, spec_of in contestants:
        try:
            running = stack.enter_context(serving(spec_of(), setup.scratch / "logs"))
            url = f"{running.base_url}/v2/models/{setup.model_name}/infer"
            agreement[name] = _check(name, url, body.read_bytes(), reference)
        except (ServerError, OSError) as exc:
            log.error("%s: %s", name, exc)
            notes[name] = f"not measured: {exc}"
            continue
        measures[name] = partial(wrk.run, url, body, settings=setup.load, cpu=running.cpu_s)
    return measures


def run(setup: TensorSetup) -> dict[str, Any]:
    """Rows of figures per contestant and concurrency, plus notes on what could not run.

    All servers run at once (idle ones cost next to nothing) so that the measurements can
    be interleaved: for each concurrency, ``rounds`` rounds in which every contestant gets
    one run, in an order rotated each round. Load from other work on a shared machine then
    skews every contestant alike, instead of whichever ran at a busy moment.
    """
    setup.scratch.mkdir(parents=True, exist_ok=True)
    body = setup.scratch / "body.json"
    body.write_bytes(request_body(setup.model.manifest.inputs[0].name, [SENTENCE]))
    notes: dict[str, str] = {}
    agreement: dict[str, float] = {}
    embedder = Embedder(setup.model.path)
    reference = embedder.embed([SENTENCE])
    ours = Embedder(setup.model.path, spin_us=OUR_SPIN_US)

    def raw(e: Embedder, concurrency: int) -> LoadResult:
        return inprocess.run(lambda: e.embed([SENTENCE]), concurrency,
                             setup.load.duration_s, setup.load.warmup_s)

    results: dict[tuple[str, int], list[LoadResult]] = {}
    with contextlib.ExitStack() as stack:
        measures: dict[str, Measure] = {
            RAW: partial(raw, embedder), RAW_OURS: partial(raw, ours),
            **_start_servers(setup, stack, body, reference, notes, agreement)}
        for c in setup.concurrency:
            for i in range(setup.rounds):
                for name in rotated(list(measures), i):
                    try:
                        r = measures[name](c)
                    except wrk.WrkError as exc:
                        log.error("%s c=%d: %s", name, c, exc)
                        notes[name] = f"a run failed: {exc}"
                        continue
                    results.setdefault((name, c), []).append(r)
                    log.info("round %d c=%d %s: %.1f req/s, p50 %.2f ms, p99 %.2f ms", i + 1,
                             c, name, r.rps, r.p50_ms, r.p99_ms)
    return {"rows": _rows(results), "notes": notes, "agreement": agreement,
            "settings": SETTINGS, "body_bytes": len(body.read_bytes()), "rounds": setup.rounds,
            "model": {"name": setup.model.manifest.name, "onnx": str(setup.model.onnx_source),
                      "sha256": setup.model.onnx_sha256,
                      "onnx_bytes": setup.model.onnx_source.stat().st_size}}
