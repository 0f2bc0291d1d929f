"""Causal LMs on onnxruntime's CUDA provider, driven by ``llmos.llm.decoder`` (caches in
host memory): a small random decoder of the SmolLM2 architecture compared step by step with
the same graph on the CPU, then the SmolLM2 demo pack answering as it does on the CPU.
On a machine without a GPU (or without onnxruntime-gpu) they skip themselves, saying why.

The demo pack comes from the suite's builder, or, on a GPU box without the model packages,
from a folder of packs built elsewhere named by ``LLMOS_TEST_DEMO_DIR``."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from llmos.llm.decoder import Decoder
from llmos.llm.model import load_language_model
from llmos.pack import container
from llmos.pack.llm.architecture import spec_from_config
from llmos.pack.llm.onnx_graph import build_decoder
from llmos.runtimes.base import RuntimeOptions

from .conftest import TEST_LIMITS, THREADS, PackPath
from .test_release import _answers

pytestmark = pytest.mark.gpu

VOCAB, HIDDEN, INTER, LAYERS, HEADS, KV_HEADS = 256, 128, 256, 2, 4, 2
CONFIG = {"model_type": "llama", "vocab_size": VOCAB, "hidden_size": HIDDEN,
          "intermediate_size": INTER, "num_hidden_layers": LAYERS,
          "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS, "rms_norm_eps": 1e-5,
          "max_position_embeddings": 256, "rope_theta": 10000.0, "tie_word_embeddings": True}


def _random_weights(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    kv = KV_HEADS * HIDDEN // HEADS

    def w(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.05).astype(np.float32)

    ones = np.ones(HIDDEN, np.float32)
    out = {"model.embed_tokens.weight": w(VOCAB, HIDDEN), "model.norm.weight": ones}
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        out |= {p + "input_layernorm.weight": ones, p + "post_attention_layernorm.weight": ones,
                p + "self_attn.q_proj.weight": w(HIDDEN, HIDDEN),
                p + "self_attn.k_proj.weight": w(kv, HIDDEN),
                p + "self_attn.v_proj.weight": w(kv, HIDDEN),
                p + "self_attn.o_proj.weight": w(HIDDEN, HIDDEN),
                p + "mlp.gate_proj.weight": w(INTER, HIDDEN),
                p + "mlp.up_proj.weight": w(INTER, HIDDEN),
                p + "mlp.down_proj.weight": w(HIDDEN, INTER)}
    return out


def _run(providers: list[str]) -> tuple[list[np.ndarray], list[str]]:
    import onnxruntime as ort

    spec = spec_from_config(CONFIG)
    graph = build_decoder(spec, _random_weights()).SerializeToString()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(graph, options, providers=providers)
    decoder = Decoder(session, spec, slots=2, capacity=64)
    logits = [decoder.prefill(0, [5, 17, 42, 9]).copy(), decoder.prefill(1, [3, 3]).copy()]
    lengths = [4, 2]
    tokens = [int(np.argmax(logits[0])), int(np.argmax(logits[1]))]
    for _ in range(6):
        step = decoder.decode(tokens, lengths).copy()
        logits.append(step)
        lengths = [n + 1 for n in lengths]
        tokens = [int(t) for t in np.argmax(step, axis=1)]
    return logits, session.get_providers()


def test_the_decoder_on_cuda_matches_the_cpu(cuda_provider: None) -> None:
    on_cpu, _ = _run(["CPUExecutionProvider"])
    on_gpu, providers = _run(["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert providers[0] == "CUDAExecutionProvider"
    for cpu, gpu in zip(on_cpu, on_gpu, strict=True):
        np.testing.assert_allclose(gpu, cpu, atol=2e-3, rtol=1e-3)


async def test_smollm2_on_cuda_answers_as_on_the_cpu(cuda_provider: None,
                                                     llm_pack: PackPath) -> None:
    given = os.environ.get("LLMOS_TEST_DEMO_DIR")
    pack = Path(given) / "smollm2.llmpack" if given else llm_pack("smollm2")
    manifest, compressed = container.read_pack(pack)
    answers = {}
    for device in ("cpu", "cuda:0"):
        files = container.split_files(manifest,
                                      container.decompress_into([compressed], manifest))
        lm = load_language_model(manifest, files,
                                 RuntimeOptions(device=device, intra_op_threads=THREADS),
                                 TEST_LIMITS)
        try:
            answers[device] = await _answers(lm)
        finally:
            lm.close()
    assert "Paris" in answers["cuda:0"][0], answers
    assert answers["cuda:0"] == answers["cpu"]
