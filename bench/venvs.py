"""The benchmark's own Python environments, one per contestant family (a table).

Peers get their own venvs under ``build/bench-venvs/`` because their dependency pins clash
with the project's (MLServer pins FastAPI, llama-cpp-python compiles llama.cpp). Versions
of the packages the contestants share with LLM OS (onnxruntime, tokenizers, numpy) come
from ``userland/constraints.txt``, so every contestant runs the same inference library.

``python -m bench.venvs`` makes them idempotently: a venv whose recorded spec matches is
left alone; one that failed with the same spec is not retried (set ``BENCH_RETRY=1`` to
retry), and its reason is kept in ``NAME.failed`` for the report. A venv that needs
build tools (llama.cpp's compiler and cmake: ``bench/host-deps.sh`` installs them) is not
attempted without them; it fails at once saying which are missing, and is retried as soon
as they are there.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
CONSTRAINTS = ROOT / "userland" / "constraints.txt"
SPEC_FILE = ".bench-spec.json"


@dataclass(frozen=True)
class VenvSpec:
    name: str
    packages: tuple[str, ...]
    purpose: str
    required: bool = False  # the bench cannot run without it (the chart needs matplotlib)
    time_cap_s: int = 1200
    env: Mapping[str, str] = field(default_factory=dict)
    shared: tuple[str, ...] = ()  # packages pinned to the project's constraints
    tools: tuple[str, ...] = ()  # programs the install needs on PATH (not part of the key)

    def key(self, constraints: Mapping[str, str]) -> str:
        doc = {k: v for k, v in asdict(self).items() if k != "tools"}
        doc["pins"] = {n: constraints.get(n, "") for n in self.shared}
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


VENVS: tuple[VenvSpec, ...] = (
    VenvSpec("peers", ("fastapi==0.163.2", "uvicorn[standard]==0.54.0", "matplotlib==3.11.2"),
             "FastAPI + uvicorn service, the chart", required=True,
             shared=("onnxruntime", "tokenizers", "numpy")),
    # MLServer 1.7.1's inference workers call asyncio.get_event_loop() in a fresh process,
    # which uvloop >= 0.22 refuses ("no current event loop"): the model never loads.
    VenvSpec("mlserver", ("mlserver==1.7.1", "uvloop==0.21.0"),
             "Seldon MLServer with a custom runtime",
             shared=("onnxruntime", "tokenizers")),
    VenvSpec("ortgenai", ("onnxruntime-genai==0.18.0",),
             "onnxruntime-genai and its model builder (torch, transformers)",
             shared=("torch", "transformers", "onnx", "onnx-ir", "safetensors", "tqdm")),
    # llama-cpp-python has no wheel on PyPI: pip compiles llama.cpp (minutes to an hour on
    # two cores). LLAVA_BUILD=OFF skips the multimodal library the server does not need.
    VenvSpec("llamacpp", ("llama-cpp-python[server]==0.3.36",),
             "llama-cpp-python's OpenAI-compatible server (compiles llama.cpp)",
             time_cap_s=3600, tools=("cc", "c++", "cmake"),
             env={"CMAKE_ARGS": "-DLLAVA_BUILD=OFF -DGGML_NATIVE=ON",
                  "CMAKE_BUILD_PARALLEL_LEVEL": str(os.cpu_count() or 1)}),
)
BY_NAME = {v.name: v for v in VENVS}


def read_constraints(text: str) -> dict[str, str]:
    """name (lower case, ``_`` as ``-``) -> exact version, from a pip freeze (pure)."""
    pins: dict[str, str] = {}
    for line in text.splitlines():
        m = re.match(r"^\s*([A-Za-z0-9_.\-]+)==([^\s;#]+)", line)
        if m:
            pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    return pins


def requirements(spec: VenvSpec, constraints: Mapping[str, str]) -> list[str]:
    """pip arguments: the spec's own packages plus the shared ones at the project's versions."""
    shared = [f"{n}=={constraints[n]}" if n in constraints else n for n in spec.shared]
    return [*spec.packages, *shared]


@dataclass(frozen=True)
class Status:
    name: str
    python: Path | None  # set when ready
    reason: str = ""  # why not, when not ready


def venv_dir(root: Path, name: str) -> Path:
    return root / name


def status(root: Path, name: str) -> Status:
    """Ready (its python), failed (the reason recorded at install) or never made."""
    python = venv_dir(root.resolve(), name) / "bin" / "python"
    if (venv_dir(root, name) / SPEC_FILE).exists() and python.exists():
        return Status(name, python)
    failed = root / f"{name}.failed"
    if failed.exists():
        return Status(name, None, json.loads(failed.read_text())["reason"])
    return Status(name, None, "not installed (run 'make bench', which installs it)")


def _run_capped(argv: Sequence[str], env: Mapping[str, str], cap_s: float,
                log_path: Path) -> tuple[int | None, float]:
    """Run in its own process group; kill the whole group at the cap. (returncode, seconds)."""
    t0 = time.monotonic()
    with log_path.open("ab") as out:
        proc = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, **env}, start_new_session=True)
        try:
            return proc.wait(timeout=cap_s), time.monotonic() - t0
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return None, time.monotonic() - t0


def _tail(path: Path, lines: int = 5) -> str:
    text = path.read_text(errors="replace").splitlines()
    useful = [x for x in text if "is ignored: it is neither a file nor a directory" not in x]
    return " | ".join(x.strip() for x in useful[-lines:])


def missing_tools(spec: VenvSpec) -> list[str]:
    """The build tools ``spec`` needs that are not on PATH."""
    return [t for t in spec.tools if shutil.which(t) is None]


def _failed_before(failed: Path, key: str, missing: Sequence[str]) -> bool:
    """A failure recorded for this spec that would happen again: not one for want of tools
    that are there now."""
    if not failed.exists():
        return False
    doc = json.loads(failed.read_text())
    return bool(doc.get("key") == key and set(doc.get("missing", ())) <= set(missing))


def ensure(spec: VenvSpec, root: Path, constraints: Mapping[str, str],
           retry: bool = False) -> Status:
    """Make the venv of ``spec`` unless it is there already (or failed before with this spec)."""
    key = spec.key(constraints)
    target = venv_dir(root, spec.name)
    stamp, failed = target / SPEC_FILE, root / f"{spec.name}.failed"
    if stamp.exists() and json.loads(stamp.read_text()).get("key") == key:
        return status(root, spec.name)
    missing = missing_tools(spec)
    if not retry and _failed_before(failed, key, missing):
        log.info("%s: failed before with this spec (%s); BENCH_RETRY=1 retries", spec.name,
                 failed)
        return status(root, spec.name)
    root.mkdir(parents=True, exist_ok=True)
    stamp.unlink(missing_ok=True)
    failed.unlink(missing_ok=True)
    if missing:
        why = (f"needs {', '.join(missing)} to build, not found on PATH (apt-get install "
               "build-essential cmake; 'make bench' does: bench/host-deps.sh)")
        failed.write_text(json.dumps({"key": key, "reason": why, "missing": missing}))
        log.warning("%s: %s", spec.name, why)
        if spec.required:
            raise SystemExit(f"bench: required environment {spec.name} failed: {why}")
        return status(root, spec.name)
    log_path = root / f"{spec.name}.log"
    log_path.write_text("")
    log.info("%s: installing %s (cap %d s; log %s)", spec.name, spec.purpose, spec.time_cap_s,
             log_path)
    python = target / "bin" / "python"
    steps = [[sys.executable, "-m", "venv", "--clear", str(target)],
             [str(python), "-m", "pip", "install", "-q", "--upgrade", "pip"],
             [str(python), "-m", "pip", "install", "-q", *requirements(spec, constraints)]]
    deadline = time.monotonic() + spec.time_cap_s
    for argv in steps:
        code, _ = _run_capped(argv, spec.env, max(1.0, deadline - time.monotonic()), log_path)
        if code != 0:
            why = (f"did not install within {spec.time_cap_s} s on {os.cpu_count()} cores"
                   if code is None else f"pip exited {code}: {_tail(log_path)}")
            failed.write_text(json.dumps({"key": key, "reason": why}))
            log.warning("%s: %s", spec.name, why)
            if spec.required:
                raise SystemExit(f"bench: required environment {spec.name} failed: {why}")
            return status(root, spec.name)
    stamp.write_text(json.dumps({"key": key, "packages": requirements(spec, constraints)}))
    return status(root, spec.name)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="make the benchmark's venvs (idempotent)")
    parser.add_argument("--root", type=Path, default=ROOT / "build" / "bench-venvs")
    parser.add_argument("--only", nargs="*", choices=sorted(BY_NAME), default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    constraints = read_constraints(CONSTRAINTS.read_text())
    retry = os.environ.get("BENCH_RETRY", "") == "1"
    for spec in VENVS:
        if args.only is None or spec.name in args.only:
            st = ensure(spec, args.root, constraints, retry)
            log.info("%s: %s", spec.name, "ready" if st.python else f"unavailable: {st.reason}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
