"""Suite-wide settings. Each area keeps its own fixtures in its folder's conftest.py."""

from __future__ import annotations

import os
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
