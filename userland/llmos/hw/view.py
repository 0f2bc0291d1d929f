"""The machine's resources as the server shows them: gauges, GPU memory, memory warnings.

``ResourceView`` reads the weight memory pool and the accelerators the device controller
follows (through a callable: this module sits below the controllers) and answers the
metrics registry's gauges, the admin's GPU memory column and /health's warnings.
"""

from __future__ import annotations

from collections.abc import Callable

from llmos.hw.gpu import GpuMemoryReader, NvidiaSmi
from llmos.hw.memory import MemoryPool
from llmos.hw.model import Inventory
from llmos.hw.resources import MetricSample, metric_samples, sample


class ResourceView:
    def __init__(self, memory: MemoryPool | None,
                 inventory: Callable[[], Inventory] = Inventory) -> None:
        self._memory = memory
        self._inventory = inventory
        self._gpu_memory: GpuMemoryReader | None = None

    def accelerators_used(self) -> dict[str, int]:
        """Memory in use per NVIDIA GPU (PCI address -> bytes), read live (nvidia-smi at
        most every few seconds, never waited for); {} without NVIDIA GPUs."""
        if not any(a.vendor == "nvidia" for a in self._inventory().accelerators):
            return {}
        if self._gpu_memory is None:
            self._gpu_memory = GpuMemoryReader(NvidiaSmi())
        return self._gpu_memory.used()

    def gauges(self) -> tuple[MetricSample, ...]:
        return metric_samples(sample(self._memory, self._inventory(),
                                     accelerators_used=self.accelerators_used()))

    def fallback_counts(self) -> tuple[tuple[str, int], ...]:
        fallbacks = self._memory.fallbacks() if self._memory is not None else ()
        return tuple((f.what, f.count) for f in fallbacks)

    def warnings(self) -> tuple[str, ...]:
        """Weights that did not get the memory asked for: served anyway, but said."""
        fallbacks = self._memory.fallbacks() if self._memory is not None else ()
        return tuple(f"memory fallback ({f.what}): {f.reason}; to fix: {f.fix}"
                     for f in fallbacks)
