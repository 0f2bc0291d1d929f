"""``make bench``: every benchmark in one go, then the table, the chart, bench/README.md.

``python -m bench.run`` (in the project venv, after ``python -m bench.venvs``) writes
``bench/results/results.json``, ``results.md`` and ``chart.png``, and rewrites
bench/README.md between its bench markers. Sections that cannot run say why in the report instead of
stopping the others.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import generation, machine, readme, report, sealed_load, tensor, venvs, wrk
from bench.model_folder import ModelFolderError, prepare

log = logging.getLogger("bench")

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ("tensor", "sealed", "llm")
VERSIONED = {  # environment -> packages whose versions the report prints
    "project venv (LLM OS, raw onnxruntime)": ("llmos", "onnxruntime", "tokenizers", "numpy",
                                               "aiohttp", "cryptography", "zstandard"),
    "peers": ("fastapi", "uvicorn", "uvloop", "onnxruntime", "tokenizers", "matplotlib"),
    "mlserver": ("mlserver", "uvloop", "onnxruntime", "tokenizers"),
    "ortgenai": ("onnxruntime-genai", "onnxruntime"),
    "llamacpp": ("llama-cpp-python",),
}


@dataclass(frozen=True)
class Options:
    demo: Path
    key: Path
    venv_root: Path
    out: Path
    scratch: Path
    sections: tuple[str, ...]
    concurrency: tuple[int, ...]
    load: wrk.WrkSettings
    rounds: int
    llm_tokens: int
    llm_repeat: int
    llm_helper: bool
    merge: bool
    readme: Path | None
    slowdown_ms: float = 0.0  # added to every LLM OS inference (the guard's self-test)
    compare: tuple[tuple[str, Path], ...] = ()  # (label, userland/) measured beside LLM OS
    variants: tuple[tensor.Variant, ...] = ()  # this tree's LLM OS with other settings


def _versions(opts: Options) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for env, names in VERSIONED.items():
        python = (Path(sys.executable) if env.startswith("project")
                  else venvs.status(opts.venv_root, env).python)
        if python is not None:
            out[env] = dict(machine.package_versions(python, names))
    return out


def _guarded(name: str, action: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one section; an error becomes the section's ``error`` entry, not a crash."""
    t0 = time.monotonic()
    busy = os.getloadavg()[0]
    try:
        result = action()
    except Exception as exc:  # report it beside the other sections' figures
        log.exception("%s section failed", name)
        return {"error": f"{type(exc).__name__}: {exc}", "load_avg_before": busy}
    log.info("%s section done in %.0f s", name, time.monotonic() - t0)
    return {**result, "load_avg_before": busy}


def _tensor(opts: Options) -> dict[str, Any]:
    sealed = opts.demo / "minilm.sealed"
    model = prepare(sealed, opts.key, opts.demo / "work", opts.scratch / "minilm")
    return tensor.run(tensor.TensorSetup(model, sealed, opts.key, opts.venv_root,
                                         opts.scratch / "tensor", opts.concurrency, opts.load,
                                         opts.rounds, slowdown_ms=opts.slowdown_ms,
                                         compare=opts.compare, variants=opts.variants))


def _sealed(opts: Options) -> dict[str, Any]:
    sealed = opts.demo / "minilm.sealed"
    model = prepare(sealed, opts.key, opts.demo / "work", opts.scratch / "minilm")
    packs = sorted(opts.demo.glob("*.sealed"))
    if not packs:
        raise ModelFolderError(f"no sealed packs in {opts.demo}; run 'make demo-packs'")
    tokenizer = model.path / "tokenizer.json"
    return sealed_load.run(sealed, model.onnx_source, opts.key, packs,
                           plain_tokenizer=tokenizer if tokenizer.is_file() else None)


def _llm(opts: Options) -> dict[str, Any]:
    return generation.run(generation.LlmSetup(opts.demo, opts.key, opts.venv_root,
                                              opts.scratch / "llm", opts.llm_tokens,
                                              opts.llm_repeat,
                                              helper_repeat=1 if opts.llm_helper else 0))


def _write(results: dict[str, Any], opts: Options) -> None:
    opts.out.mkdir(parents=True, exist_ok=True)
    doc = opts.out / "results.json"
    doc.write_text(json.dumps(results, indent=1, default=str))
    md = opts.out / "results.md"
    md.write_text(report.render(results))
    peers = venvs.status(opts.venv_root, "peers").python
    if peers is not None:
        subprocess.run([str(peers), "-m", "bench.chart", str(doc), str(opts.out / "chart.png")],
                       cwd=ROOT, check=True, timeout=300)
    else:
        log.warning("no chart: the peers venv (matplotlib) is missing")
    if opts.readme is not None and opts.readme.exists():
        readme.update(opts.readme, md)
    log.info("results in %s", opts.out)


def _previous(opts: Options) -> dict[str, Any]:
    """The sections of the last run (kept by ``--merge``), or nothing."""
    doc = opts.out / "results.json"
    if not (opts.merge and doc.is_file()):
        return {}
    old: dict[str, Any] = json.loads(doc.read_text())
    return {k: v for k, v in old.items() if k in SECTIONS}


def run(opts: Options) -> dict[str, Any]:
    """Each section in turn; the report is written after every one, so a run that is cut
    short still leaves what it measured."""
    results: dict[str, Any] = {
        **_previous(opts),
        "generated": time.strftime("%Y-%m-%d %H:%M %Z"),
        "machine": machine.describe(),
        "versions": _versions(opts),
        "settings": {"duration_s": opts.load.duration_s, "warmup_s": opts.load.warmup_s,
                     "wrk_threads": opts.load.threads, "rounds": opts.rounds,
                     "concurrency": list(opts.concurrency)},
    }
    steps = {"tensor": _tensor, "sealed": _sealed, "llm": _llm}
    for name in opts.sections:
        results[name] = _guarded(name, lambda step=steps[name]: step(opts))  # type: ignore[misc]
        _write(results, opts)
    return results


def parse_args(argv: Sequence[str] | None) -> Options:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    p.add_argument("--demo", type=Path, default=ROOT / "build" / "demo")
    p.add_argument("--key", type=Path, default=ROOT / "build" / "keys" / "fleet.key")
    p.add_argument("--venvs", type=Path, default=ROOT / "build" / "bench-venvs")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    p.add_argument("--scratch", type=Path, default=ROOT / "build" / "bench")
    p.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--duration", type=int, default=5, help="seconds measured per run")
    p.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per run")
    p.add_argument("--rounds", type=int, default=3,
                   help="interleaved rounds per concurrency (every contestant once each)")
    p.add_argument("--llm-tokens", type=int, default=generation.MAX_TOKENS,
                   help="tokens generated per LLM run")
    p.add_argument("--llm-repeat", type=int, default=generation.REPEAT,
                   help="LLM runs per contestant (medians reported)")
    p.add_argument("--skip-llm-bench", action="store_true",
                   help="leave out bench/llm_bench.py (it has its own CLI; it is slow)")
    p.add_argument("--merge", action="store_true",
                   help="keep the sections of the last results.json that this run skips")
    p.add_argument("--readme", default=str(readme.FIGURES),
                   help="file whose bench markers get the table ('' for none)")
    p.add_argument("--compare", nargs="+", default=[], metavar="LABEL=DIR",
                   help="also measure LLM OS from another tree's userland/ (e.g. main's, "
                        "exported with git archive), as contestant 'llmos LABEL'")
    p.add_argument("--variant", nargs="+", default=[], metavar="LABEL=KEY=VALUE[,KEY=VALUE]",
                   help="also measure this tree's LLM OS with these settings (TOML values "
                        "without commas; server.KEY for the server's, e.g. "
                        "spin=spin_us=200 awake=server.cpu_awake_s=0), as 'llmos LABEL'")
    a = p.parse_args(argv)
    compare = tuple((label, Path(d).resolve()) for label, _, d in
                    (c.partition("=") for c in a.compare))
    variants = tuple(tensor.Variant.parse(v) for v in a.variant)
    # Absolute paths: servers run with their own working directories.
    return Options(demo=a.demo.resolve(), key=a.key.resolve(), venv_root=a.venvs.resolve(),
                   out=a.out.resolve(), scratch=a.scratch.resolve(),
                   sections=tuple(a.only), concurrency=tuple(a.concurrency),
                   load=wrk.WrkSettings(duration_s=a.duration, warmup_s=a.warmup),
                   rounds=a.rounds, llm_tokens=a.llm_tokens, llm_repeat=a.llm_repeat,
                   llm_helper=not a.skip_llm_bench, merge=a.merge,
                   readme=Path(a.readme) if a.readme else None, compare=compare,
                   variants=variants)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run(parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
