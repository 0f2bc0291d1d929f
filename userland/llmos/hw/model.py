"""What the machine has: accelerators, their device nodes, and device events (pure data).

Nothing here does I/O. ``llmos.hw.udev`` observes PCI devices (``PciDevice``),
``llmos.hw.inventory`` turns them into an ``Inventory`` of ``Accelerator`` records.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path


class NodeKind(StrEnum):
    NVIDIA = "nvidia"  # /dev/nvidiaN, one per GPU (made by nvidia-modprobe, not udev)
    NVIDIA_CONTROL = "nvidia-control"  # /dev/nvidiactl, /dev/nvidia-uvm...: shared by all GPUs
    DRM_CARD = "drm-card"  # /dev/dri/cardN
    DRM_RENDER = "drm-render"  # /dev/dri/renderDN
    ACCEL = "accel"  # /dev/accel/accelN (compute accelerators)
    OTHER = "other"


class NodeOrigin(StrEnum):
    UDEV = "udev"  # a udev child device named the node
    NVIDIA_PROC = "nvidia-proc"  # /proc/driver/nvidia/gpus/<addr>/information gave the minor
    PCI_ORDER = "pci-order"  # no minor known: the driver's probe order (PCI order) assumed
    PRESENT = "present"  # a shared node found in /dev


@dataclass(frozen=True)
class DeviceNode:
    path: Path
    kind: NodeKind
    origin: NodeOrigin = NodeOrigin.UDEV


@dataclass(frozen=True)
class PciDevice:
    """One PCI function as udev reports it (before any matching)."""

    address: str  # "0000:01:00.0"
    vendor_id: int
    device_id: int
    class_code: int  # 24 bits: class, subclass, programming interface
    driver: str | None
    numa_node: int | None
    model: str  # hwdb name where known, else "vvvv:dddd"
    nodes: tuple[DeviceNode, ...] = ()  # from drm / accel children
    vram_total_bytes: int | None = None  # amdgpu mem_info_vram_total
    vram_used_bytes: int | None = None  # amdgpu mem_info_vram_used


@dataclass(frozen=True)
class Accelerator:
    address: str  # PCI address: the stable identity while the device is present
    vendor: str  # "nvidia", "amd", "intel", "generic" (from the match table)
    vendor_id: int
    device_id: int
    class_code: int
    model: str
    driver: str | None
    numa_node: int | None
    nodes: tuple[DeviceNode, ...]
    memory_total_bytes: int | None = None
    memory_used_bytes: int | None = None
    cuda_index: int | None = None  # CUDA ordinal in PCI-bus order (NVIDIA with its driver only)

    @property
    def cuda_device(self) -> str | None:
        """``"cuda:N"`` for an NVIDIA GPU bound to the nvidia driver, else None."""
        return None if self.cuda_index is None else f"cuda:{self.cuda_index}"

    def signature(self) -> tuple[object, ...]:
        """What placement depends on (not the memory in use, which changes all the time)."""
        return (self.address, self.vendor, self.driver, self.cuda_index, self.nodes)


@dataclass(frozen=True)
class Inventory:
    accelerators: tuple[Accelerator, ...] = ()
    shared_nodes: tuple[DeviceNode, ...] = ()  # /dev/nvidiactl, /dev/nvidia-uvm...

    def by_address(self, address: str) -> Accelerator | None:
        return next((a for a in self.accelerators if a.address == address), None)

    def cuda(self) -> tuple[Accelerator, ...]:
        """NVIDIA GPUs usable through CUDA, in ordinal order."""
        found = [a for a in self.accelerators if a.cuda_index is not None]
        return tuple(sorted(found, key=lambda a: a.cuda_index or 0))

    def signature(self) -> tuple[object, ...]:
        return (tuple(a.signature() for a in self.accelerators), self.shared_nodes)


@dataclass(frozen=True)
class DeviceEvent:
    """One udev event (add, remove, change, bind, unbind) on a device we follow."""

    action: str
    subsystem: str
    sys_path: str
    address: str | None  # the PCI address of the device or of its PCI parent


_PCI_ADDRESS = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")


def pci_address_of(sys_path: str) -> str | None:
    """The innermost PCI address in a sysfs path (works after the device is gone)."""
    found = [part for part in sys_path.split("/") if _PCI_ADDRESS.match(part)]
    return found[-1] if found else None


def under(root: Path, path: Path) -> Path:
    """``path`` (absolute, e.g. /dev/nvidia0) inside another root (a fake / in tests)."""
    return root / path.relative_to(path.anchor) if path.is_absolute() else root / path
