"""The embedding kind on a miniature encoder (ONNX and TorchScript), and TorchScript tensor
packs: text in, normalised vectors out, the same through both runtimes."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch

from llmos.errors import BadRequestError, ConfigError
from llmos.pack.manifest import TensorSpec
from llmos.pack.packer import PackSpec, pack_onnx, pack_torchscript
from llmos.runtimes.base import Runtime, RuntimeOptions
from llmos.runtimes.loader import load_runtime
from llmos.runtimes.validation import check_inputs

from .models import (
    DIM,
    IN,
    OUT,
    embedding_reference,
    embedding_table,
    mlp_reference,
    mlp_weights,
    token_ids,
    unpack,
)

TEXTS = ["red cat runs", "Green dog", "blue", "a cat sleeps fast"]


class TinyEncoder(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.table = torch.nn.Parameter(torch.from_numpy(embedding_table()))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask.unsqueeze(-1).to(torch.float32)
        mean = (self.table[input_ids] * mask).sum(1) / mask.sum(1)
        return torch.nn.functional.normalize(mean, dim=1)


class TinyMlp(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        w = mlp_weights()
        self.w1, self.b1, self.w2 = (torch.nn.Parameter(torch.from_numpy(w[k]))
                                     for k in ("w1", "b1", "w2"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x @ self.w1 + self.b1) @ self.w2


def scripted(module: torch.nn.Module) -> bytes:
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(module), buffer)
    return buffer.getvalue()


def text(*items: str | bytes) -> np.ndarray:
    return np.array([s.encode() if isinstance(s, str) else s for s in items], dtype=object)


@pytest.fixture(params=["onnx", "torchscript"])
def embedder(request: pytest.FixtureRequest, embed_files: tuple[Path, Path]) -> Runtime:
    model, tokenizer = embed_files
    spec = PackSpec("tiny-embed", kind="embedding", tokenizer=tokenizer, max_length=3)
    if request.param == "onnx":
        built = pack_onnx(model, spec)
    else:
        built = pack_torchscript(scripted(TinyEncoder()), spec, dim=DIM)
    manifest, files = unpack(built.blob)
    assert manifest.runtime == request.param
    assert manifest.inputs == (TensorSpec("text", "BYTES", (-1,)),)
    assert manifest.outputs == (TensorSpec("embedding", "FP32", (-1, DIM)),)
    assert manifest.extra["embedding"] == {"tokenizer": "tokenizer.json", "max_length": 3,
                                           "dim": DIM}
    return load_runtime(manifest, files, RuntimeOptions())


def test_text_to_normalised_embeddings(embedder: Runtime) -> None:
    assert embedder.batchable
    out = embedder.infer({"text": text(*TEXTS)})["embedding"]
    assert out.dtype == np.float32 and out.shape == (len(TEXTS), DIM)
    truncated = [token_ids(t)[:3] for t in TEXTS]  # max_length 3
    np.testing.assert_allclose(out, embedding_reference(truncated), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)


def test_padding_does_not_change_an_embedding(embedder: Runtime) -> None:
    alone = embedder.infer({"text": text("blue")})["embedding"]
    batched = embedder.infer({"text": text("red cat runs", "blue")})["embedding"]
    np.testing.assert_allclose(batched[1:], alone, rtol=1e-5, atol=1e-6)


def test_empty_batch(embedder: Runtime) -> None:
    out = embedder.infer({"text": np.array([], dtype=object)})["embedding"]
    assert out.shape == (0, DIM)


@pytest.mark.parametrize("value, match", [
    (np.array([b"\xff\xfe"], dtype=object), "element 0 is not valid UTF-8"),
    (np.array([[b"red"]], dtype=object), r"shape \[1, 1\] does not match the model's \[-1\]"),
    (np.ones(2, np.float32), "datatype FP32 given, model 'e' expects BYTES"),
    (np.array([b"red", 7], dtype=object), "element 1 is a int"),
])
def test_bad_text(embedder: Runtime, value: np.ndarray, match: str) -> None:
    with pytest.raises(BadRequestError, match=match):
        embedder.infer(check_inputs("e", embedder.inputs, {"text": value}))


def test_str_elements_are_accepted(embedder: Runtime) -> None:
    out = embedder.infer({"text": np.array(["red cat"], dtype=object)})["embedding"]
    np.testing.assert_allclose(out, embedding_reference([token_ids("red cat")]), atol=1e-6)


def test_torchscript_tensor_pack() -> None:
    spec_in, spec_out = TensorSpec("x", "FP32", (-1, IN)), TensorSpec("y", "FP32", (-1, OUT))
    built = pack_torchscript(scripted(TinyMlp()), PackSpec("tiny-mlp"), inputs=[spec_in],
                             outputs=[spec_out])
    manifest, files = unpack(built.blob)
    assert (manifest.runtime, manifest.entrypoint) == ("torchscript", "model.pt")
    runtime = load_runtime(manifest, files, RuntimeOptions())
    assert runtime.batchable
    x = np.random.default_rng(1).standard_normal((3, IN)).astype(np.float32)
    np.testing.assert_allclose(runtime.infer({"x": x})["y"], mlp_reference(x, mlp_weights()),
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(BadRequestError, match="input 'x'"):  # the data plane's one check
        check_inputs("tiny-mlp", runtime.inputs, {"x": x.astype(np.float64)})
    assert pack_torchscript(scripted(TinyMlp()), PackSpec("tiny-mlp"), inputs=[spec_in],
                            outputs=[spec_out]).blob == built.blob


def test_torchscript_packs_are_not_quantised() -> None:
    with pytest.raises(ConfigError, match="stored as they are"):
        pack_torchscript(b"", PackSpec("m", quantization="int8"), dim=4)


@pytest.mark.gpu
@pytest.mark.parametrize("runtime", ["onnx", "torchscript"])
def test_embedding_on_cuda_matches_the_cpu(runtime: str, embed_files: tuple[Path, Path],
                                           request: pytest.FixtureRequest) -> None:
    if not torch.cuda.is_available():
        pytest.skip("PyTorch sees no CUDA GPU")
    if runtime == "onnx":
        request.getfixturevalue("cuda_provider")
    model, tokenizer = embed_files
    spec = PackSpec("tiny-embed", kind="embedding", tokenizer=tokenizer, max_length=3)
    built = (pack_onnx(model, spec) if runtime == "onnx"
             else pack_torchscript(scripted(TinyEncoder()), spec, dim=DIM))
    manifest, files = unpack(built.blob)
    on_cpu = load_runtime(manifest, files, RuntimeOptions()).infer({"text": text(*TEXTS)})
    on_gpu = load_runtime(manifest, files, RuntimeOptions(device="cuda:0")).infer(
        {"text": text(*TEXTS)})
    np.testing.assert_allclose(on_gpu["embedding"], on_cpu["embedding"], atol=1e-5)
