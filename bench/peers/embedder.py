"""Text -> embedding with tokenizers + onnxruntime: the work every tensor-model contestant does.

The FastAPI service, the MLServer runtime and the in-process "raw onnxruntime" loop all call
this one class, so they differ from LLM OS only in how requests reach the model. A model
folder (written by ``bench.tensor``) holds ``model.onnx`` (the very file LLM OS seals),
``tokenizer.json`` and ``embedder.json`` (max length, pooling, normalisation, threads).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

SETTINGS_FILE = "embedder.json"


@dataclass(frozen=True)
class EmbedderSettings:
    max_length: int = 256
    pooling: str = "mean"  # "mean" over the attention mask, "cls", or "none" (graph pools)
    normalize: bool = True
    intra_op_threads: int = 0  # 0 = onnxruntime's default (one per core)

    @classmethod
    def read(cls, folder: Path) -> EmbedderSettings:
        return cls(**json.loads((folder / SETTINGS_FILE).read_text()))


def _pool(hidden: np.ndarray, mask: np.ndarray, pooling: str) -> np.ndarray:
    if hidden.ndim == 2 or pooling == "none":
        return hidden
    if pooling == "cls":
        return np.asarray(hidden[:, 0, :])
    weights = mask[:, :, None].astype(hidden.dtype)
    summed = (hidden * weights).sum(axis=1)
    counts = np.clip(weights.sum(axis=1), 1e-9, None)
    return np.asarray(summed / counts)


class Embedder:
    """One onnxruntime session and one tokenizer; ``embed`` is safe to call from threads."""

    def __init__(self, folder: Path, spin_us: int | None = None) -> None:
        """``spin_us``: how long onnxruntime's pool threads busy-wait for more work before
        they sleep, as LLM OS's model setting of that name says (None: onnxruntime's
        default, without bound)."""
        self.settings = EmbedderSettings.read(folder)
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.settings.intra_op_threads
        if spin_us is not None:
            options.add_session_config_entry("session.intra_op.allow_spinning",
                                             "1" if spin_us > 0 else "0")
        if spin_us:
            options.add_session_config_entry("session.intra_op.spin_duration_us", str(spin_us))
        self.session = ort.InferenceSession(str(folder / "model.onnx"), options,
                                            providers=["CPUExecutionProvider"])
        self.input_names = {i.name for i in self.session.get_inputs()}
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(self.settings.max_length)
        self.tokenizer.enable_padding()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """[len(texts), dim] float32."""
        encodings = self.tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask,
                 "token_type_ids": np.zeros_like(ids)}
        hidden = self.session.run(None, {k: v for k, v in feeds.items()
                                         if k in self.input_names})[0]
        pooled = _pool(np.asarray(hidden), mask, self.settings.pooling)
        if self.settings.normalize:
            norms = np.linalg.norm(pooled, axis=1, keepdims=True)
            pooled = pooled / np.clip(norms, 1e-12, None)
        return np.ascontiguousarray(pooled, dtype=np.float32)
