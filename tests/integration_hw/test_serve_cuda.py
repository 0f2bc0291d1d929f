"""On a machine with an NVIDIA GPU and onnxruntime-gpu: ``llmos serve`` finds the GPU through
udev, claims it, places the MiniLM demo model on it (onnxruntime's CUDA provider), and the
embeddings it serves match the same pack's on the CPU; /metrics shows the GPU's memory.

Elsewhere these tests skip themselves, saying why. The demo pack comes from the suite's
builder (``minilm_demo``), or, on a GPU box without the model packages, from a folder of
packs built elsewhere named by ``LLMOS_TEST_DEMO_DIR`` (``minilm.llmpack``)."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import numpy as np
import pytest

from llmos.hw.gpu import NvidiaSmi
from llmos.vault.sealed import seal_pack_file

from .conftest import Vault, write_config
from .process import Serve

pytestmark = pytest.mark.gpu

TEXTS = ["The capital of France is Paris.", "A GPU serves this sentence.",
         "Sealed model packs never touch the disk in plaintext."]


@pytest.fixture(scope="module")
def minilm_sealed(nvidia_gpu: None, cuda_provider: None, request: pytest.FixtureRequest,
                  vault: Vault) -> Path:
    given = os.environ.get("LLMOS_TEST_DEMO_DIR")
    plain = (Path(given) / "minilm.llmpack" if given
             else request.getfixturevalue("minilm_demo")["minilm.llmpack"])
    sealed = vault.dir / "minilm-gpu-test.sealed"
    seal_pack_file(plain, sealed, vault.kek)
    return sealed


def _embeddings(srv: Serve, model: str) -> np.ndarray:
    status, doc = srv.call("POST", f"/v2/models/{model}/infer", {"inputs": [
        {"name": "text", "datatype": "BYTES", "shape": [len(TEXTS)], "data": TEXTS}]})
    assert status == 200, doc
    out = doc["outputs"][0]
    return np.array(out["data"], np.float32).reshape(out["shape"])


def test_demo_embedding_model_serves_on_the_gpu_and_matches_the_cpu(
        minilm_sealed: Path, small_pack: Path, vault: Vault, tmp_path: Path) -> None:
    nvml = NvidiaSmi().query()
    assert nvml, "the driver is loaded but nvidia-smi lists no GPU"
    models: list[dict[str, object]] = [
        {"name": "minilm-gpu", "pack": str(minilm_sealed), "device": "cuda:0"},
        {"name": "minilm-cpu", "pack": str(minilm_sealed), "device": "cpu"},
        {"name": "small-any", "pack": str(small_pack), "device": "any"}]
    srv = Serve(write_config(tmp_path / "llmos.toml", vault.keyfile, models), tmp_path)
    try:
        health = srv.settled()
        assert health["status"] == "ready", health
        for name in ("minilm-gpu", "small-any"):
            model = health["models"][name]
            assert (model["state"], model["device"], model["placement"]) == \
                ("READY", "cuda:0", "placed"), model
        gpu, cpu = _embeddings(srv, "minilm-gpu"), _embeddings(srv, "minilm-cpu")
        assert gpu.shape == cpu.shape == (len(TEXTS), 384)
        # The demo pack is int8: the CPU and CUDA providers quantise the activations alike
        # but their integer kernels differ (an H100: max |difference| 0.008 of unit vectors).
        cosine = (gpu * cpu).sum(1) / np.linalg.norm(gpu, axis=1) / np.linalg.norm(cpu, axis=1)
        assert cosine.min() > 0.995, cosine
        np.testing.assert_allclose(gpu, cpu, atol=0.02)

        address = next(iter(nvml))
        gpu_labels = (("address", address), ("device", "cuda:0"))
        total = srv.metrics()[("llmos_accelerator_memory_total_bytes", gpu_labels)]
        assert total == nvml[address].memory_total_bytes
        # Memory in use is read live (nvidia-smi, at most every few seconds, in the
        # background): the models this server put on the GPU show within seconds.
        deadline = time.monotonic() + 20
        while (used := srv.metrics()[("llmos_accelerator_memory_used_bytes", gpu_labels)]) \
                == 0 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert used > 0
    finally:
        code = srv.stop()
    log = "".join(srv.lines)
    assert code == 0, log
    assert re.search(rf"claimed {re.escape(address)} \(", log), log
    assert re.search(r"model minilm-gpu \S+ READY on cuda:0 ", log), log


@pytest.fixture(scope="module")
def smollm2_sealed(nvidia_gpu: None, cuda_provider: None, vault: Vault) -> Path:
    given = os.environ.get("LLMOS_TEST_DEMO_DIR")
    if given:
        plain = Path(given) / "smollm2.llmpack"
    else:
        from llmos.demo.smollm2 import plain_pack
        plain = plain_pack("smollm2", Path(__file__).resolve().parents[2] / "build" / "demo")
    sealed = vault.dir / "smollm2-gpu-test.sealed"
    seal_pack_file(plain, sealed, vault.kek)
    return sealed


def test_demo_llm_serves_chat_on_the_gpu(smollm2_sealed: Path, vault: Vault,
                                         tmp_path: Path) -> None:
    models: list[dict[str, object]] = [
        {"name": "smollm2", "pack": str(smollm2_sealed), "device": "cuda:0"}]
    srv = Serve(write_config(tmp_path / "llmos.toml", vault.keyfile, models), tmp_path)
    try:
        health = srv.settled()
        model = health["models"]["smollm2"]
        assert (health["status"], model["state"], model["device"]) == \
            ("ready", "READY", "cuda:0"), health
        status, doc = srv.call("POST", "/v1/chat/completions", {
            "model": "smollm2", "max_tokens": 24, "temperature": 0,
            "messages": [{"role": "user", "content": "What is the capital of France?"}]})
        assert status == 200, doc
        assert "Paris" in doc["choices"][0]["message"]["content"], doc
    finally:
        code = srv.stop()
    assert code == 0, "".join(srv.lines)
