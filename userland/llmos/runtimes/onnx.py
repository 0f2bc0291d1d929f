"""ONNX Runtime adapter: the only module that imports ``onnxruntime``.

Weights stay where the pack was decompressed (pinned memory, say), with no second copy:

* the pack's graph names each large initializer as external data in ``weights.bin`` and the
  manifest's weight table (``llmos.pack.weights``) says where each one lies;
* each becomes a numpy view of the payload and an ``OrtValue`` over that view;
* ``add_external_initializers`` hands them over for the graph's external references (ORT
  refuses external data it cannot find for a model loaded from bytes), and
  ``add_initializer`` makes the session *use* the caller's buffer instead of allocating
  its own (ORT copies the tensors while it builds the graph, then drops the copies;
  ``heap.trim`` returns those pages);
* weight prepacking (ORT copying a MatMul's constant weights into its kernels' layout, a
  third faster on MiniLM) is on where the pack names the tensors only such kernels read
  (``WeightTable.prepacked``): ``releasable`` returns their views, whose pages the caller
  gives back once the session is built, so the model still holds one copy of its weights
  (ORT's, pinned with the process under ``memory.lock_process``). Elsewhere it is off unless
  the model's ``prepack`` setting says otherwise.

On CUDA, ORT copies the weights to the GPU (no ``add_initializer``: it would refuse the
host buffers with a warning). A CUDA device without ``CUDAExecutionProvider`` is an error,
never a silent CPU fallback: the caller decides about fallbacks.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnxruntime as ort

from llmos.errors import BadRequestError, ModelLoadError, PackFormatError
from llmos.hw import priority
from llmos.pack.embedding import ENCODER_INPUTS, OPTIONAL_INPUTS, EmbeddingConfig
from llmos.pack.manifest import Manifest, TensorSpec
from llmos.pack.weights import WeightTable, runs, views
from llmos.runtimes import heap
from llmos.runtimes.base import Runtime, RuntimeOptions
from llmos.runtimes.device import Device, parse_device
from llmos.runtimes.embedding import EmbeddingRuntime
from llmos.runtimes.validation import Signed, conform
from llmos.text.tokenizer import TextTokenizer

log = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


class WeightedSession(ort.InferenceSession):  # type: ignore[misc]
    """An InferenceSession that keeps its weights' numpy views and OrtValues alive."""

    def __init__(self, graph: bytes, options: Any, providers: Sequence[Any],
                 weights: Sequence[Any]) -> None:
        super().__init__(graph, sess_options=options, providers=list(providers))
        self.weights = tuple(weights)


def _providers(device: Device) -> list[Any]:
    if device.kind == "cpu":
        return [CPU]
    available = ort.get_available_providers()
    if CUDA not in available:
        raise ModelLoadError(
            f"device {device} requested, but this onnxruntime has no {CUDA} "
            f"(it has {', '.join(available)})",
            "install onnxruntime-gpu matching the CUDA driver, or set the model's "
            "device = cpu (or cpu_fallback = true)")
    return [(CUDA, {"device_id": device.index}), CPU]


def session_options(options: RuntimeOptions) -> Any:
    """onnxruntime's session options for ``options`` (threads, prepacking, spinning): what
    every session of a pack gets, and what the benches give their own sessions."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = max(options.intra_op_threads, 0)
    so.inter_op_num_threads = max(options.inter_op_threads, 0)
    so.log_severity_level = 3  # errors only; problems reach the caller as exceptions
    if not options.prepack:
        so.add_session_config_entry("session.disable_prepacking", "1")
    spins = options.spin_us > 0
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spins else "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "1" if spins else "0")
    if spins:  # bounded: onnxruntime's own spin is not
        so.add_session_config_entry("session.intra_op.spin_duration_us", str(options.spin_us))
    return so


def _file(manifest: Manifest, files: Mapping[str, memoryview], name: str) -> memoryview:
    try:
        return files[name]
    except KeyError:
        raise PackFormatError(f"pack {manifest.name!r} has no file {name!r}",
                              "the pack is damaged; pack the model again") from None


def prepacks(manifest: Manifest, options: RuntimeOptions) -> bool:
    """Whether sessions of this pack prepack their weights (``RuntimeOptions.prepacks``),
    by default where the pack names the weights that only prepacking kernels read."""
    table = WeightTable.from_extra(manifest.extra)
    return options.prepacks(table is not None and bool(table.prepacked))


def releasable(manifest: Manifest, files: Mapping[str, memoryview],
               options: RuntimeOptions) -> list[memoryview]:
    """The parts of ``files`` that sessions of this pack, built with ``options``, never read
    again: the prepacked weights on the CPU (ORT keeps its own copy of them)."""
    table = WeightTable.from_extra(manifest.extra)
    if (table is None or not table.prepacked or parse_device(options.device).kind != "cpu"
            or not prepacks(manifest, options)):
        return []
    return runs(table, table.prepacked, _file(manifest, files, table.file))


def open_session(manifest: Manifest, files: Mapping[str, memoryview],
                 options: RuntimeOptions) -> Any:
    """An ``onnxruntime.InferenceSession`` over the pack's graph, its weights used in place.

    The session keeps views of ``files``: they must stay alive (and unchanged) while it does.
    """
    if manifest.runtime != "onnx":
        raise ModelLoadError(f"pack {manifest.name!r} is for runtime {manifest.runtime!r}",
                             "load it with that runtime")
    device = parse_device(options.device)
    providers = _providers(device)
    so = session_options(dataclasses.replace(options, prepack=prepacks(manifest, options)))
    table = WeightTable.from_extra(manifest.extra)
    weights: list[tuple[np.ndarray, Any]] = []
    if table is not None:
        for array in views(table, _file(manifest, files, table.file)).values():
            weights.append((array, ort.OrtValue.ortvalue_from_numpy(array)))
        names = [e.name for e in table.entries]
        so.add_external_initializers(names, [v for _, v in weights])
        if device.kind == "cpu":
            for name, (_, value) in zip(names, weights, strict=True):
                so.add_initializer(name, value)
    graph = bytes(_file(manifest, files, manifest.entrypoint))
    try:  # built in a lowered thread: the session's thread pools inherit its priority
        session = priority.in_lowered_thread(
            lambda: WeightedSession(graph, so, providers, weights))
    except Exception as exc:  # onnxruntime's pybind errors share no base class but Exception
        raise ModelLoadError(f"onnxruntime cannot load pack {manifest.name!r}: {exc}",
                             "pack the model again with this version of llmos") from exc
    finally:
        heap.trim()
    if device.kind == "cuda" and session.get_providers()[0] != CUDA:
        raise ModelLoadError(f"onnxruntime did not place {manifest.name!r} on {device}",
                             "check the CUDA driver and libraries (nvidia-smi), or use cpu")
    log.debug("%s: session on %s, %d weights in place", manifest.name,
              session.get_providers()[0], len(weights))
    return session


def run_options() -> Any:
    """A fresh ``RunOptions``: setting its ``terminate`` from another thread stops the run
    it is passed to between two graph nodes (``llmos.llm.interrupt``)."""
    return ort.RunOptions()


def _to_feed(spec: TensorSpec, array: np.ndarray) -> np.ndarray:
    """BYTES arrive as bytes objects; onnxruntime's string tensors take str."""
    if spec.datatype != "BYTES":
        return array
    out = np.empty(array.shape, dtype=object)
    try:
        for index, value in np.ndenumerate(array):
            out[index] = value.decode() if isinstance(value, bytes) else str(value)
    except UnicodeDecodeError:
        raise BadRequestError(f"input {spec.name!r} holds bytes that are not UTF-8",
                              "send strings as UTF-8") from None
    return out


def _from_output(array: Any) -> np.ndarray:
    out = np.asarray(array)
    if out.dtype.kind not in "OU":
        return out
    encoded = np.empty(out.shape, dtype=object)
    for index, value in np.ndenumerate(out):
        encoded[index] = value.encode() if isinstance(value, str) else value
    return encoded


class OnnxRuntime(Signed):
    """A ``tensor`` pack: the public inputs and outputs are the graph's."""

    def __init__(self, manifest: Manifest, session: Any) -> None:
        graph_inputs = {i.name for i in session.get_inputs()}
        graph_outputs = {o.name for o in session.get_outputs()}
        declared_in = {s.name for s in manifest.inputs}
        declared_out = {s.name for s in manifest.outputs}
        if declared_in != graph_inputs or not declared_out <= graph_outputs:
            raise ModelLoadError(
                f"pack {manifest.name!r}: the manifest declares inputs {sorted(declared_in)} "
                f"and outputs {sorted(declared_out)}, the graph has {sorted(graph_inputs)} and "
                f"{sorted(graph_outputs)}", "pack the model again")
        self._session: Any = session
        self._inputs = manifest.inputs
        self._outputs = manifest.outputs
        self._output_names = [s.name for s in manifest.outputs]

    def infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._session is None:
            raise ModelLoadError("this model instance is closed", "load the model again")
        checked = conform(self._inputs, inputs)
        feed = {s.name: _to_feed(s, checked[s.name]) for s in self._inputs}
        try:
            results = self._session.run(self._output_names, feed)
        except ort.capi.onnxruntime_pybind11_state.InvalidArgument as exc:
            raise BadRequestError(f"the model refused the inputs: {exc}",
                                  "check the input values against the model's signature"
                                  ) from exc
        return {name: _from_output(r) for name, r in zip(self._output_names, results,
                                                         strict=True)}

    def close(self) -> None:
        self._session = None


def _embedding(manifest: Manifest, files: Mapping[str, memoryview], session: Any
               ) -> EmbeddingRuntime:
    cfg = EmbeddingConfig.of(manifest)
    tokenizer = TextTokenizer.from_json(_file(manifest, files, cfg.tokenizer), cfg.max_length)
    names = [i.name for i in session.get_inputs()]
    unexpected = set(names) - set(ENCODER_INPUTS) - set(OPTIONAL_INPUTS)
    if not set(ENCODER_INPUTS) <= set(names) or unexpected:
        raise ModelLoadError(f"embedding pack {manifest.name!r}: graph inputs {names}, expected "
                             f"{list(ENCODER_INPUTS)} (and optionally {list(OPTIONAL_INPUTS)})",
                             "export the encoder with those inputs")
    output = session.get_outputs()[0].name
    holder: list[Any] = [session]

    def encode(input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        if not holder:
            raise ModelLoadError("this model instance is closed", "load the model again")
        feed = {"input_ids": input_ids, "attention_mask": attention_mask}
        if "token_type_ids" in names:
            feed["token_type_ids"] = np.zeros_like(input_ids)
        result: np.ndarray = holder[0].run([output], feed)[0]
        return result

    return EmbeddingRuntime(tokenizer, encode, cfg.dim, release=holder.clear)


def load(manifest: Manifest, files: Mapping[str, memoryview], options: RuntimeOptions
         ) -> Runtime:
    """A Runtime for an ONNX pack of kind ``tensor`` or ``embedding``."""
    session = open_session(manifest, files, options)
    if manifest.kind == "embedding":
        return _embedding(manifest, files, session)
    return OnnxRuntime(manifest, session)
