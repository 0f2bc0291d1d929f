"""Model backends: what a loaded model becomes, by manifest ``kind``.

A ``Backend`` turns a decrypted pack (manifest + in-memory files) into a ``Served`` object.
It runs in a worker thread (it may block: sessions are created and warmed up there) and
must leave the model ready to answer. Tensor and embedding packs get ``TensorModel`` (the
runtime instances behind a ``Batcher``); other kinds (``causal-lm``) register their own
backend, all listed in the composition root (``llmos.app.BACKENDS``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from llmos.config import ModelConfig
from llmos.errors import PrepackedWeightsStillRead
from llmos.pack.manifest import Manifest, TensorSpec
from llmos.runtimes import heap
from llmos.runtimes.base import Runtime, RuntimeOptions
from llmos.serving.batcher import Batcher, BatchPolicy
from llmos.serving.metrics import ModelMetrics, ServingMetrics
from llmos.serving.slices import rows_of, run_sliced
from llmos.serving.warmup import same_answer, sample_inputs

log = logging.getLogger(__name__)

PLATFORMS = {"onnx": "onnxruntime_onnx", "torchscript": "pytorch_torchscript"}


def keep_all(views: list[memoryview]) -> int:
    """The ``release`` without a memory pool: nothing is given back."""
    return 0


@dataclass(frozen=True)
class ModelContext:
    """Everything a backend may use to build a served model."""

    config: ModelConfig
    manifest: Manifest
    files: Mapping[str, memoryview]  # decrypted, in memory only
    metrics: ServingMetrics
    options: RuntimeOptions
    timeout_s: float  # per-request deadline (the model's, else the server's)
    # Gives back the whole pages under parts of ``files`` the runtime no longer reads
    # (``MemoryPool.release``); the bytes released.
    release: Callable[[list[memoryview]], int] = keep_all


class Served(Protocol):
    """A loaded model as the registry keeps it."""

    def close(self) -> None:
        """Stop serving and release sessions and memory (blocking; not on the event loop)."""
        ...


Backend = Callable[[ModelContext], Served]
RuntimeFactory = Callable[[Manifest, Mapping[str, memoryview], RuntimeOptions], Runtime]
# The parts of a pack's files that loaded runtimes no longer read (prepacked weights).
Releasable = Callable[[Manifest, Mapping[str, memoryview], RuntimeOptions], list[memoryview]]


def runtime_options(cfg: ModelConfig, device: str, reads_in_place: bool = False
                    ) -> RuntimeOptions:
    """How to run ``cfg`` on ``device``: the placement's, never the config's own wish
    ("cuda", "any"), which only the placement plan turns into a device; ``reads_in_place``:
    what the loader learnt about this machine's kernels and the pack."""
    return RuntimeOptions(device=device, intra_op_threads=cfg.threads, prepack=cfg.prepack,
                          reads_in_place=reads_in_place, spin_us=cfg.spin_us)


class TensorModel:
    """A tensor (or embedding) model: its runtime instances, scheduled by a Batcher."""

    def __init__(self, name: str, manifest: Manifest, runtimes: list[Runtime],
                 policy: BatchPolicy, metrics: ModelMetrics, timeout_s: float) -> None:
        self.name = name
        self.manifest = manifest
        self.version = manifest.version
        self.runtimes = runtimes
        self.metrics = metrics
        self.timeout_s = timeout_s
        self.inputs: tuple[TensorSpec, ...] = runtimes[0].inputs
        self.outputs: tuple[TensorSpec, ...] = runtimes[0].outputs
        self.output_names = tuple(s.name for s in self.outputs)
        self.batcher = Batcher(name, [r.infer for r in runtimes], policy, metrics)
        metrics.pending = lambda: self.batcher.depth

    async def infer(self, inputs: Mapping[str, np.ndarray], timeout_s: float, *,
                    expected: bool = False) -> dict[str, np.ndarray]:
        policy = self.batcher.policy
        if not policy.batchable or rows_of(inputs) <= policy.max_batch_size:
            return await self.batcher.infer(inputs, timeout_s, expected=expected)
        return await run_sliced(  # bounded work: max_batch_size rows at a time
            lambda part, left_s, first: self.batcher.infer(
                part, left_s, expected=first and expected, admitted=not first),
            inputs, policy.max_batch_size, timeout_s, model=self.name)

    def close(self) -> None:
        self.metrics.pending = lambda: 0
        self.batcher.close()
        for r in self.runtimes:
            r.close()
        self.runtimes = []
        heap.trim()  # the runtime's own copies (prepacked weights) back to the system


def _default_runtime_factory() -> tuple[RuntimeFactory, Releasable]:
    from llmos.runtimes.loader import load_runtime, releasable  # the runtime adapters

    return load_runtime, releasable


def _release(ctx: ModelContext, runtimes: list[Runtime], warm: list[dict[str, np.ndarray]],
             views: list[memoryview]) -> None:
    """Give back the pages of ``views``, then check every instance still answers its
    warm-up as before (a runtime that still read them would now read zeros)."""
    if not views:
        return
    freed = ctx.release(views)
    if not freed:
        return
    for rt, before in zip(runtimes, warm, strict=True):
        if not same_answer(before, rt.infer(sample_inputs(rt.inputs))):
            raise PrepackedWeightsStillRead(ctx.config.name)
    log.info("model %s: %.1f MiB of weights given back (the runtime holds them prepacked)",
             ctx.config.name, freed / 2**20)


def tensor_backend(ctx: ModelContext, load: RuntimeFactory | None = None,
                   releasable: Releasable | None = None) -> TensorModel:
    """Load ``instances`` runtimes, warm each up on a sample input, give back the weights
    they hold in their own form, start the batcher."""
    default_load, default_releasable = _default_runtime_factory()
    load = load or default_load
    releasable = releasable or default_releasable
    cfg, manifest = ctx.config, ctx.manifest
    runtimes: list[Runtime] = []
    try:
        warm = []
        for _ in range(cfg.instances):
            rt = load(manifest, ctx.files, ctx.options)
            runtimes.append(rt)
            warm.append(rt.infer(sample_inputs(rt.inputs)))
        _release(ctx, runtimes, warm, releasable(manifest, ctx.files, ctx.options))
    except BaseException:
        for rt in runtimes:
            rt.close()
        raise
    batchable = runtimes[0].batchable
    policy = BatchPolicy(max_batch_size=cfg.max_batch_size if batchable else 1,
                         max_queue_delay_s=cfg.max_queue_delay_ms / 1000.0,
                         queue_size=cfg.queue_size, batchable=batchable)
    log.info("model %s: %d instance(s) warm, %s", cfg.name, cfg.instances,
             f"dynamic batching up to {policy.max_batch_size} rows" if batchable
             else "no batching (no dynamic batch dimension)")
    return TensorModel(cfg.name, manifest, runtimes, policy,
                       ctx.metrics.model(cfg.name, manifest.version), ctx.timeout_s)

