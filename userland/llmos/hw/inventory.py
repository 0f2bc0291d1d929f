"""Observed PCI devices -> the accelerator inventory.

``build_inventory`` is pure: it takes what udev, the nvidia driver and nvidia-smi said
and decides which functions are accelerators, their nodes, memory and CUDA ordinals.
``InventorySource`` gathers those observations (udev, /proc, nvidia-smi, /dev) and
calls it; it is what ``DeviceController`` rescans on every hot-plug.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from llmos.hw import udev
from llmos.hw.gpu import SHARED_NODE_NAMES, NvidiaGpuInfo, NvidiaSmi, read_device_minors
from llmos.hw.match import DEFAULT_RULES, MatchRule, match
from llmos.hw.model import (
    Accelerator,
    DeviceNode,
    Inventory,
    NodeKind,
    NodeOrigin,
    PciDevice,
    under,
)

log = logging.getLogger(__name__)

NVIDIA_DRIVER = "nvidia"


DEV = Path("/dev")


def _nvidia_node(
    address: str, rank: int, minors: Mapping[str, int], present: Callable[[Path], bool],
) -> tuple[DeviceNode, ...]:
    if address in minors:
        minor, origin = minors[address], NodeOrigin.NVIDIA_PROC
    else:  # the driver numbers GPUs in probe order, which is PCI order
        minor, origin = rank, NodeOrigin.PCI_ORDER
    path = DEV / f"nvidia{minor}"
    return (DeviceNode(path, NodeKind.NVIDIA, origin),) if present(path) else ()


def build_inventory(
    pci: Iterable[PciDevice],
    rules: Iterable[MatchRule] = DEFAULT_RULES,
    *,
    minors: Mapping[str, int] | None = None,
    nvml: Mapping[str, NvidiaGpuInfo] | None = None,
    present: Callable[[Path], bool] = Path.exists,
) -> Inventory:
    """The accelerators among ``pci``; ``present`` says whether a /dev node exists."""
    rules = tuple(rules)
    minors = minors or {}
    nvml = nvml or {}
    matched = [(d, r) for d in sorted(pci, key=lambda d: d.address)
               if (r := match(d.vendor_id, d.class_code, rules)) is not None]
    cuda_rank = 0
    accelerators = []
    for device, rule in matched:
        nodes = device.nodes
        total, used = device.vram_total_bytes, device.vram_used_bytes
        model = device.model
        cuda_index = None
        if rule.vendor == "nvidia" and device.driver == NVIDIA_DRIVER:
            cuda_index = cuda_rank
            cuda_rank += 1
            nodes = _nvidia_node(device.address, cuda_index, minors, present) + nodes
            if (info := nvml.get(device.address)) is not None:
                total, used, model = info.memory_total_bytes, info.memory_used_bytes, info.name
        accelerators.append(Accelerator(
            address=device.address, vendor=rule.vendor, vendor_id=device.vendor_id,
            device_id=device.device_id, class_code=device.class_code, model=model,
            driver=device.driver, numa_node=device.numa_node, nodes=nodes,
            memory_total_bytes=total, memory_used_bytes=used, cuda_index=cuda_index,
        ))
    shared: tuple[DeviceNode, ...] = ()
    if cuda_rank:
        shared = tuple(DeviceNode(DEV / n, NodeKind.NVIDIA_CONTROL, NodeOrigin.PRESENT)
                       for n in SHARED_NODE_NAMES if present(DEV / n))
    return Inventory(tuple(accelerators), shared)


@dataclass(frozen=True)
class InventorySource:
    """Scans the machine; call it for a fresh ``Inventory`` (blocking: run it in a thread).

    ``root`` is where /dev and /proc are looked up (sysfs always comes through udev);
    node paths in the inventory stay as the system names them (/dev/nvidia0).
    """

    rules: tuple[MatchRule, ...] = DEFAULT_RULES
    root: Path = Path("/")
    smi: NvidiaSmi = field(default_factory=NvidiaSmi)

    def _present(self, path: Path) -> bool:
        return under(self.root, path).exists()

    def __call__(self) -> Inventory:
        pci = udev.read_pci_devices()
        has_nvidia = any(d.driver == NVIDIA_DRIVER for d in pci)
        inventory = build_inventory(
            pci, self.rules,
            minors=read_device_minors(self.root / "proc") if has_nvidia else {},
            nvml=self.smi.query() if has_nvidia else {},
            present=self._present,
        )
        log.debug("inventory: %s", [a.address for a in inventory.accelerators])
        return inventory
