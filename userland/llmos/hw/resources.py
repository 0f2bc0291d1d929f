"""A snapshot of the machine's resources for status and metrics (psutil is imported here only).

``sample()`` reads CPU, RAM, this process, pinned and hugepage memory, per-model memory
(from the ``MemoryPool``'s records) and per-accelerator memory (the ``Inventory``'s, or a
live reading such as ``llmos.hw.gpu.GpuMemoryReader``'s).
``metric_samples()`` turns a snapshot into plain gauge values; the serving metrics module
registers them (this module does not import prometheus_client).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil

from llmos.hw.meminfo import MEMINFO, SELF_STATUS, locked_bytes, read_hugepages
from llmos.hw.memory import MemoryPool, OwnerUsage
from llmos.hw.model import Inventory


@dataclass(frozen=True)
class AcceleratorMemory:
    address: str
    device: str  # "cuda:0", or the PCI address for accelerators without a runtime device
    model: str
    total_bytes: int | None
    used_bytes: int | None


@dataclass(frozen=True)
class ResourceSnapshot:
    taken_at: float  # time.time()
    cpu_percent: float  # whole machine, since the previous sample
    cpu_count: int
    ram_total_bytes: int
    ram_available_bytes: int
    process_rss_bytes: int
    process_locked_bytes: int  # resident and pinned (smaps_rollup Locked)
    hugepage_bytes: int  # size of one hugepage
    hugepages_total: int
    hugepages_free: int
    hugepages_used: int
    models: tuple[OwnerUsage, ...]
    accelerators: tuple[AcceleratorMemory, ...]


def sample(
    pool: MemoryPool | None = None,
    inventory: Inventory | None = None,
    *,
    meminfo: Path = MEMINFO,
    status: Path = SELF_STATUS,
    accelerators_used: Mapping[str, int] | None = None,
) -> ResourceSnapshot:
    """Read everything now (cheap: a few /proc reads; no subprocess). Accelerator memory
    in use comes from ``accelerators_used`` (PCI address -> bytes, a live reading) where it
    has the device, else from the inventory (as of its last scan)."""
    live = accelerators_used or {}
    vm = psutil.virtual_memory()
    hp = read_hugepages(meminfo)
    accelerators = tuple(
        AcceleratorMemory(a.address, a.cuda_device or a.address, a.model,
                          a.memory_total_bytes, live.get(a.address, a.memory_used_bytes))
        for a in (inventory.accelerators if inventory else ()))
    return ResourceSnapshot(
        taken_at=time.time(),
        cpu_percent=float(psutil.cpu_percent(interval=None)),
        cpu_count=os.cpu_count() or 1,
        ram_total_bytes=int(vm.total),
        ram_available_bytes=int(vm.available),
        process_rss_bytes=int(psutil.Process().memory_info().rss),
        process_locked_bytes=locked_bytes(status=status),
        hugepage_bytes=hp.page_bytes,
        hugepages_total=hp.total,
        hugepages_free=hp.free,
        hugepages_used=hp.used,
        models=pool.usage() if pool else (),
        accelerators=accelerators,
    )


@dataclass(frozen=True)
class MetricSample:
    name: str
    help: str
    labels: tuple[tuple[str, str], ...]
    value: float


def metric_samples(snap: ResourceSnapshot) -> tuple[MetricSample, ...]:
    """Gauge values (Prometheus naming) for one snapshot; unknown values are left out."""
    def g(name: str, help_: str, value: float | None, **labels: str) -> list[MetricSample]:
        return [] if value is None else [MetricSample(name, help_, tuple(labels.items()),
                                                      float(value))]

    out = [
        *g("llmos_cpu_utilization_percent", "Machine CPU utilisation", snap.cpu_percent),
        *g("llmos_memory_total_bytes", "Machine RAM", snap.ram_total_bytes),
        *g("llmos_memory_available_bytes", "RAM available", snap.ram_available_bytes),
        *g("llmos_process_resident_bytes", "Supervisor RSS", snap.process_rss_bytes),
        *g("llmos_process_locked_bytes", "Supervisor resident bytes pinned by mlock/mlockall",
           snap.process_locked_bytes),
        *g("llmos_hugepages_total", "Hugepages reserved by the kernel", snap.hugepages_total),
        *g("llmos_hugepages_free", "Hugepages free", snap.hugepages_free),
        *g("llmos_hugepages_used", "Hugepages in use", snap.hugepages_used),
    ]
    for m in snap.models:
        out += g("llmos_model_memory_bytes", "Weight memory held by a model", m.bytes,
                 model=m.owner)
        out += g("llmos_model_hugepage_bytes", "Weight memory of a model in hugepages",
                 m.hugepage_bytes, model=m.owner)
        out += g("llmos_model_locked_bytes", "Weight memory of a model mlock'ed",
                 m.locked_bytes, model=m.owner)
        out += g("llmos_model_released_bytes", "Decrypted weight memory given back once the "
                 "runtime kept its own (prepacked) copy", m.released_bytes, model=m.owner)
    for a in snap.accelerators:
        out += g("llmos_accelerator_memory_total_bytes", "Accelerator memory", a.total_bytes,
                 device=a.device, address=a.address)
        out += g("llmos_accelerator_memory_used_bytes", "Accelerator memory in use",
                 a.used_bytes, device=a.device, address=a.address)
    return tuple(out)
