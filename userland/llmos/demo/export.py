"""Build-side PyTorch adapter for the sentence-embedding demo: a Hugging Face encoder with
mean pooling and L2 normalisation *inside* the exported graph, to ONNX and to TorchScript.

ONNX: ``torch.onnx.export(dynamo=True)``, the torch.export-based exporter (the default of
torch 2.13; the TorchScript-based one is deprecated and traces shape checks as
constants), opset 18, dynamic batch and sequence axes. Its output is byte-for-byte the
same on every run. The graph output is ``sentence_embedding``: this exporter names an
inner value ``embedding`` (an ``nn.Embedding`` result) and would refuse a duplicate.

TorchScript: ``torch.jit.trace`` of the same module; the trace generalises over batch and
sequence sizes (checked by the demo tests).
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from transformers import AutoModel
from transformers.utils import logging as hf_logging

from llmos.text.tokenizer import TextTokenizer

log = logging.getLogger(__name__)

OPSET = 18
GRAPH_OUTPUT = "sentence_embedding"
_EXAMPLE_TEXTS = ("An example sentence to trace the encoder with.", "Another, shorter one.")


class SentenceEncoder(torch.nn.Module):
    """(input_ids, attention_mask) -> mean-pooled, L2-normalised embeddings [batch, dim]."""

    def __init__(self, encoder: torch.nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=torch.zeros_like(input_ids)).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        mean = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return torch.nn.functional.normalize(mean, p=2.0, dim=1)


def load_encoder(model_dir: Path) -> SentenceEncoder:
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    encoder = AutoModel.from_pretrained(str(model_dir), local_files_only=True)
    return SentenceEncoder(encoder).eval()


def example_inputs(tokenizer_json: Path, texts: Sequence[str] = _EXAMPLE_TEXTS
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    batch = TextTokenizer.from_json(tokenizer_json.read_bytes(), 64).encode_batch(texts)
    return torch.from_numpy(batch.input_ids), torch.from_numpy(batch.attention_mask)


_CHATTY = ("onnx_ir", "onnxscript", "torch.onnx", "torch.export")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporters print progress on stdout, log every graph pass and warn about tracing:
    keep their warnings' logs only, and the printed lines at debug level."""
    out = io.StringIO()
    loggers = [logging.getLogger(name) for name in _CHATTY]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(out), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
    for line in out.getvalue().splitlines():
        log.debug("%s", line)


def export_onnx(model_dir: Path, tokenizer_json: Path, out: Path) -> None:
    """The encoder as one ONNX file (weights inline)."""
    module = load_encoder(model_dir)
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    axes = {0: batch, 1: sequence}
    with _quiet(), torch.no_grad():
        torch.onnx.export(module, example_inputs(tokenizer_json), str(out), dynamo=True,
                          input_names=["input_ids", "attention_mask"],
                          output_names=[GRAPH_OUTPUT], opset_version=OPSET,
                          dynamic_shapes={"input_ids": axes, "attention_mask": axes},
                          external_data=False, verbose=False)


def export_torchscript(model_dir: Path, tokenizer_json: Path) -> bytes:
    """The encoder traced to TorchScript, as ``torch.jit.save`` writes it."""
    module = load_encoder(model_dir)
    with _quiet(), torch.no_grad():
        traced = torch.jit.trace(  # type: ignore[no-untyped-call]
            module, example_inputs(tokenizer_json), check_trace=False)
    buffer = io.BytesIO()
    torch.jit.save(traced, buffer)
    return buffer.getvalue()
