"""The bundled MiniLM packs against sentence-transformers, and against each other.

One demo build serves the whole session (``minilm_dir``): build/demo when it is up to date,
else a fresh build into a temporary folder (about a minute).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from llmos.demo.minilm import DIM, MAX_LENGTH, model_dir
from llmos.pack import container
from llmos.runtimes.base import RuntimeOptions
from llmos.runtimes.loader import load_runtime
from llmos.text.tokenizer import TextTokenizer

from .models import unpack
from .test_memory import probe

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "What time does the museum open on Sundays?",
    "Stock markets fell sharply after the central bank raised interest rates.",
    "I would like to book a table for two at seven tomorrow evening.",
    "Photosynthesis turns light into chemical energy stored in glucose.",
    "How do I reset my password?",
    "The patient presented with acute abdominal pain and a mild fever.",
    "Machine learning models can be compressed by quantising their weights.",
    "Mount Everest is the highest mountain above sea level.",
    "Please switch off the lights when you leave the room.",
    " ".join(["a long text is truncated to the model's maximum length"] * 40),
]


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_dir()), device="cpu")
    assert model.max_seq_length == MAX_LENGTH
    out: np.ndarray = model.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)
    return out


def embed(folder: Path, name: str) -> np.ndarray:
    manifest, files = unpack((folder / f"{name}.llmpack").read_bytes())
    runtime = load_runtime(manifest, files, RuntimeOptions(intra_op_threads=2))
    try:
        out = runtime.infer({"text": np.array([t.encode() for t in TEXTS], dtype=object)})
    finally:
        runtime.close()
    return out["embedding"]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out: np.ndarray = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1)
                                               * np.linalg.norm(b, axis=1))
    return out


def test_fp32_matches_sentence_transformers(minilm_dir: Path, reference: np.ndarray) -> None:
    out = embed(minilm_dir, "minilm-fp32")
    assert out.shape == (len(TEXTS), DIM)
    assert cosines(out, reference).min() > 0.9999


def test_int8_matches_sentence_transformers(minilm_dir: Path, reference: np.ndarray) -> None:
    cos = cosines(embed(minilm_dir, "minilm"), reference)
    assert cos.min() > 0.99, cos
    assert cos.max() < 0.99999  # it is quantised: not the float model in disguise


def test_torchscript_matches_onnx(minilm_dir: Path, reference: np.ndarray) -> None:
    torch_out = embed(minilm_dir, "minilm-torch")
    assert cosines(torch_out, embed(minilm_dir, "minilm-fp32")).min() > 0.9999
    assert cosines(torch_out, reference).min() > 0.9999


def test_int8_pack_runs_the_reference_graph_exactly(minilm_dir: Path) -> None:
    """The pack (graph split from its weights, weights in place or prepacked) computes what
    plain onnxruntime computes on the same int8 model file, prepacking on in both (prepacked
    int8 kernels round differently from unpacked ones: ~3e-3, the same cosine to float32)."""
    tokenizer = TextTokenizer.from_json((model_dir() / "tokenizer.json").read_bytes(),
                                        MAX_LENGTH)
    batch = tokenizer.encode_batch(TEXTS)
    session = ort.InferenceSession(str(minilm_dir / "work" / "minilm-int8.onnx"),
                                   providers=["CPUExecutionProvider"])
    direct = session.run(None, {"input_ids": batch.input_ids,
                                "attention_mask": batch.attention_mask})[0]
    np.testing.assert_allclose(embed(minilm_dir, "minilm"), direct, rtol=1e-5, atol=1e-6)


def test_manifests(minilm_dir: Path) -> None:
    packs = {n: container.read_pack(minilm_dir / f"{n}.llmpack")[0]
             for n in ("minilm", "minilm-fp32", "minilm-torch")}
    assert {m.kind for m in packs.values()} == {"embedding"}
    assert [m.runtime for m in packs.values()] == ["onnx", "onnx", "torchscript"]
    assert [m.quantization for m in packs.values()] == ["int8", "none", "none"]
    assert len({(m.inputs, m.outputs) for m in packs.values()}) == 1
    assert packs["minilm"].size_plain < 0.5 * packs["minilm-fp32"].size_plain
    assert packs["minilm"].extra["int8"]["kept_float_after"] == ["LayerNormalization"]


@pytest.mark.parametrize("name", ["minilm", "minilm-fp32"])
def test_loaded_minilm_holds_one_copy_of_its_weights(minilm_dir: Path, name: str) -> None:
    m = probe(minilm_dir / f"{name}.llmpack", mode="session")
    assert m["load"] <= 1.2 * m["plain"], m
