"""PyTorch adapter: the only module that imports ``torch``, and only when a TorchScript pack
is loaded, so an appliance without PyTorch still imports (and serves ONNX with) llmos.

A TorchScript pack holds one ``torch.jit.save``'d module, loaded from memory through
``io.BytesIO``. Unlike ONNX Runtime, PyTorch copies the weights into its own tensors: a
TorchScript model costs its weights once more than the pack's payload while both live.

Calling conventions: ``tensor`` packs call ``forward(*inputs)`` in the manifest's input
order and expect a tensor, or a tuple in the manifest's output order; ``embedding`` packs
call ``forward(input_ids, attention_mask)`` and expect [batch, dim].
"""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping
from types import ModuleType
from typing import Any

import numpy as np

from llmos.errors import ModelLoadError, PackFormatError
from llmos.pack.embedding import EmbeddingConfig
from llmos.pack.manifest import Manifest
from llmos.runtimes.base import Runtime, RuntimeOptions
from llmos.runtimes.device import Device, parse_device
from llmos.runtimes.embedding import EmbeddingRuntime
from llmos.runtimes.validation import Signed, conform
from llmos.text.tokenizer import TextTokenizer

log = logging.getLogger(__name__)


def _torch(manifest: Manifest) -> ModuleType:
    try:
        import torch
    except ModuleNotFoundError:
        raise ModelLoadError(f"pack {manifest.name!r} needs PyTorch (runtime torchscript), "
                             "which is not installed here",
                             "install llmos with its 'torch' extra, or pack the model as ONNX"
                             ) from None
    return torch


def _check_device(torch: ModuleType, device: Device) -> None:
    if device.kind == "cuda" and not (torch.cuda.is_available()
                                      and device.index < torch.cuda.device_count()):
        raise ModelLoadError(f"device {device} requested, but PyTorch sees "
                             f"{torch.cuda.device_count()} CUDA device(s)",
                             "check the driver (nvidia-smi) and the CUDA build of torch, or "
                             "set the model's device = cpu (or cpu_fallback = true)")


def _load_module(torch: ModuleType, manifest: Manifest, files: Mapping[str, memoryview],
                 device: Device) -> Any:
    try:
        data = files[manifest.entrypoint]
    except KeyError:
        raise PackFormatError(f"pack {manifest.name!r} has no file {manifest.entrypoint!r}",
                              "the pack is damaged; pack the model again") from None
    try:
        module = torch.jit.load(io.BytesIO(data), map_location=str(device))
    except RuntimeError as exc:
        raise ModelLoadError(f"PyTorch cannot load pack {manifest.name!r}: {exc}",
                             "pack a module saved with torch.jit.save") from exc
    return module.eval()


class TorchRuntime(Signed):
    """A ``tensor`` pack run by a TorchScript module."""

    def __init__(self, manifest: Manifest, torch: ModuleType, module: Any,
                 device: Device) -> None:
        if any(s.datatype == "BYTES" for s in (*manifest.inputs, *manifest.outputs)):
            raise ModelLoadError(f"pack {manifest.name!r}: TorchScript packs cannot take or "
                                 "return BYTES tensors", "pack the model as ONNX")
        self._torch = torch
        self._module: Any = module
        self._device = str(device)
        self._inputs = manifest.inputs
        self._outputs = manifest.outputs

    def infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._module is None:
            raise ModelLoadError("this model instance is closed", "load the model again")
        checked = conform(self._inputs, inputs)
        torch = self._torch
        args = [torch.from_numpy(np.require(checked[s.name], requirements=("C", "W")))
                .to(self._device) for s in self._inputs]
        with torch.inference_mode():
            result = self._module(*args)
        results = result if isinstance(result, tuple | list) else (result,)
        if len(results) != len(self._outputs):
            raise ModelLoadError(f"the module returned {len(results)} outputs, its manifest "
                                 f"declares {len(self._outputs)}", "pack the model again")
        return {s.name: r.detach().cpu().numpy() for s, r in zip(self._outputs, results,
                                                                  strict=True)}

    def close(self) -> None:
        self._module = None


def _embedding(manifest: Manifest, files: Mapping[str, memoryview], torch: ModuleType,
               module: Any, device: Device) -> EmbeddingRuntime:
    cfg = EmbeddingConfig.of(manifest)
    tokenizer = TextTokenizer.from_json(files[cfg.tokenizer], cfg.max_length)
    holder: list[Any] = [module]

    def encode(input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        if not holder:
            raise ModelLoadError("this model instance is closed", "load the model again")
        ids = torch.from_numpy(input_ids).to(str(device))
        mask = torch.from_numpy(attention_mask).to(str(device))
        with torch.inference_mode():
            out = holder[0](ids, mask)
        result: np.ndarray = out.detach().float().cpu().numpy()
        return result

    return EmbeddingRuntime(tokenizer, encode, cfg.dim, release=holder.clear)


def load(manifest: Manifest, files: Mapping[str, memoryview], options: RuntimeOptions
         ) -> Runtime:
    """A Runtime for a TorchScript pack of kind ``tensor`` or ``embedding``."""
    torch = _torch(manifest)
    device = parse_device(options.device)
    _check_device(torch, device)
    if options.intra_op_threads > 0:  # process-wide in PyTorch, unlike ONNX Runtime
        torch.set_num_threads(options.intra_op_threads)
    module = _load_module(torch, manifest, files, device)
    if manifest.kind == "embedding":
        return _embedding(manifest, files, torch, module, device)
    return TorchRuntime(manifest, torch, module, device)
