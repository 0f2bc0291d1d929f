"""Suite-wide settings. Each area keeps its own fixtures in its folder's conftest.py."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# No model hub is reachable: anything that would download must fail loudly instead.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


MINILM_CACHE = Path(__file__).resolve().parents[1] / "build" / "test-cache" / "serving-minilm"


def _nvidia_gpu_present() -> bool:
    from llmos.hw.gpu import read_device_minors

    return bool(read_device_minors())


def _cuda_provider_present() -> bool:
    import onnxruntime as ort

    from llmos.runtimes.onnx import CUDA

    return CUDA in ort.get_available_providers()


# GPU tests ask for these fixtures, which skip them with the reason where the machine or the
# onnxruntime build cannot run them; the no_* pair guards the tests of what happens without.
@pytest.fixture(scope="session")
def nvidia_gpu() -> None:
    if not _nvidia_gpu_present():
        pytest.skip("no NVIDIA GPU: the driver lists none in /proc/driver/nvidia/gpus")


@pytest.fixture(scope="session")
def cuda_provider() -> None:
    if not _cuda_provider_present():
        pytest.skip("this onnxruntime has no CUDAExecutionProvider: install onnxruntime-gpu")


@pytest.fixture(scope="session")
def no_nvidia_gpu() -> None:
    if _nvidia_gpu_present():
        pytest.skip("this machine has an NVIDIA GPU: 'cuda' would be placed on it")


@pytest.fixture(scope="session")
def no_cuda_provider() -> None:
    if _cuda_provider_present():
        pytest.skip("this onnxruntime has CUDA: the refusal cannot happen")


@pytest.fixture(scope="session")
def minilm_demo() -> dict[str, Path]:
    """The MiniLM demo packs (int8 and float32), sealed for a test key of their own, built
    once into build/test-cache (shared by tests/serving, tests/integration_hw and tests/llm;
    later runs find them up to date): "keyfile", "minilm" and "minilm-fp32" (sealed),
    "minilm.llmpack" (plain) and "reference" (the float32 ONNX export)."""
    from llmos.demo.build import build
    from llmos.vault.kek import generate_kek
    from llmos.vault.keyfile import read_keyfile, write_keyfile

    MINILM_CACHE.mkdir(parents=True, exist_ok=True)
    keyfile = MINILM_CACHE / "fleet.key"
    if not keyfile.exists():
        write_keyfile(keyfile, generate_kek())
    packs = build(MINILM_CACHE, read_keyfile(keyfile), only=["minilm", "minilm-fp32"])
    return {"keyfile": keyfile, **{p.name: p.sealed for p in packs},
            **{p.plain.name: p.plain for p in packs},
            "reference": MINILM_CACHE / "work" / "minilm-fp32.onnx"}


# Thread priorities (llmos.hw.priority): what the kernel says a thread's nice value is.
def proc_nice(tid: int | None = None) -> int:
    """Field 19 of /proc/self/task/<tid>/stat (default: the calling thread)."""
    import threading

    tid = threading.get_native_id() if tid is None else tid
    with open(f"/proc/self/task/{tid}/stat") as f:
        stat = f.read()
    return int(stat[stat.rindex(")") + 2:].split()[16])  # fields 3.. follow the ")"


@dataclass(frozen=True)
class Priorities:
    base: int  # the nice value of the test's (the event loop's) thread
    workers: int | None  # the nice value worker threads must report; None: off
    nice_of: Callable[..., int]  # proc_nice


@pytest.fixture(params=[3, 0], ids=["lowered", "off"])
def priorities(request: pytest.FixtureRequest) -> Priorities:
    """Worker priorities configured 3 above this thread's, then off (each test runs with
    both)."""
    from llmos.hw import priority

    base = proc_nice()
    if base + 3 > priority.MAX_NICE:
        pytest.skip(f"the tests run at nice {base}: no room to lower worker threads")
    level = priority.configure(request.param)
    assert level == (base + 3 if request.param else None)
    return Priorities(base, level, proc_nice)


@pytest.fixture(autouse=True)
def _priorities_off_afterwards() -> Iterator[None]:
    """A test that built a server (``LlmOs`` configures ``server.worker_nice``) or asked
    for ``priorities`` leaves the next one the default: threads left as they start."""
    yield
    from llmos.hw import priority

    priority.configure(0)
