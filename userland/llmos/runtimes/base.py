"""The runtime protocol: load a model from in-memory files, run it, close it.

A runtime is blocking and thread-confined: the serving layer calls ``infer`` from a
worker thread, never from the event loop, and never concurrently on one instance.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from llmos.pack.manifest import Manifest, TensorSpec


@dataclass(frozen=True)
class RuntimeOptions:
    """How to run a model: device and threading (from the model's config entry)."""

    device: str = "cpu"  # "cpu" or "cuda:N"
    intra_op_threads: int = 0  # 0 = the runtime's default
    inter_op_threads: int = 1
    # ORT prepacks weights into a second, unpinned copy: faster kernels, twice the memory.
    # None: the model kind decides (``prepacks``' default: the ONNX adapter's is on where
    # the pack names the weights only prepacking kernels read, a causal LM's always on).
    prepack: bool | None = None
    # Learnt by the loader, never configured: this CPU's kernels read the pack's weights in
    # place (onnxruntime's int8 and 4-bit kernels without AVX2 and FMA), so prepacking would
    # cost a second copy and save nothing.
    reads_in_place: bool = False
    # Microseconds the runtime's pool threads busy-wait for more work before they sleep:
    # faster where one model computes at a time, slower where two share the cores (they
    # spin on the cores the other needs). 0: they sleep at once. The default is the model
    # config's.
    spin_us: int = 20

    def prepacks(self, default: bool) -> bool:
        """Whether to prepack: the model's config says, else not where this machine's
        kernels read the weights in place, else the model kind's ``default``."""
        if self.prepack is not None:
            return self.prepack
        return default and not self.reads_in_place


class Runtime(Protocol):
    """A loaded model instance."""

    @property
    def inputs(self) -> tuple[TensorSpec, ...]: ...

    @property
    def outputs(self) -> tuple[TensorSpec, ...]: ...

    @property
    def batchable(self) -> bool:
        """True when every input and output has a dynamic leading batch dimension."""
        ...

    def infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one (possibly batched) request. Raises BadRequestError for bad inputs."""
        ...

    def close(self) -> None:
        """Release the session and the memory holding the weights."""
        ...


class RuntimeLoader(Protocol):
    """Builds a Runtime from a manifest and the pack's decrypted files (in memory only)."""

    def __call__(
        self, manifest: Manifest, files: Mapping[str, memoryview], options: RuntimeOptions
    ) -> Runtime: ...
