"""An emulated multi-GPU machine in a umockdev testbed (used under umockdev-wrapper only).

Two NVIDIA GPUs (one with nvidia-drm children), an AMD GPU with drm children and VRAM
counters, a processing accelerator with an accel node, and PCI functions that are not
accelerators (the first GPU's HDMI audio, an Intel NIC). NVIDIA's /dev/nvidiaN nodes do
not come from udev: ``fake_root`` writes the driver's /proc information files and the
/dev nodes in a temporary tree, with minors deliberately not in PCI order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gi

gi.require_version("UMockdev", "1.0")
from gi.repository import UMockdev  # noqa: E402

__all__ = ["Box", "UMockdev", "build_box", "fake_root"]

NVIDIA_A = "0000:01:00.0"  # 3D controller, minor 1
NVIDIA_AUDIO = "0000:01:00.1"  # HDMI audio function of the same card: not an accelerator
NVIDIA_B = "0000:02:00.0"  # VGA controller with nvidia-drm nodes, minor 0
AMD = "0000:03:00.0"
NPU = "0000:04:00.0"  # processing accelerator (class 0x1200)
NIC = "0000:05:00.0"  # Intel Ethernet: an Intel device that is no accelerator

MINORS = {NVIDIA_A: 1, NVIDIA_B: 0}
AMD_VRAM_TOTAL = 24 * 1024**3
AMD_VRAM_USED = 512 * 1024**2


def _flat(d: dict[str, str]) -> list[str]:
    return [x for kv in d.items() for x in kv]


def _pci(tb: Any, address: str, vendor: int, device: int, cls: int, driver: str | None,
         numa: int, extra: dict[str, str] | None = None) -> Any:
    attrs = {"vendor": f"0x{vendor:04x}", "device": f"0x{device:04x}", "class": f"0x{cls:06x}",
             "numa_node": str(numa), **(extra or {})}
    props = {"PCI_SLOT_NAME": address, "PCI_ID": f"{vendor:04X}:{device:04X}"}
    if driver:
        props["DRIVER"] = driver
    return tb.add_device("pci", address, None, _flat(attrs), _flat(props))


def _node(tb: Any, parent: Any, subsystem: str, name: str, devname: str, dev: str) -> Any:
    return tb.add_device(subsystem, name, parent, ["dev", dev], _flat({"DEVNAME": devname}))


@dataclass
class Box:
    testbed: Any
    devices: dict[str, tuple[Any, list[Any]]]  # address -> (sysfs path, child paths)

    def add_nvidia_b(self) -> None:
        """Add (or hot-plug) the second NVIDIA GPU; the testbed emits the add events."""
        dev = _pci(self.testbed, NVIDIA_B, 0x10DE, 0x2684, 0x030000, "nvidia", 1)
        self.devices[NVIDIA_B] = (dev, [
            _node(self.testbed, dev, "drm", "card0", "/dev/dri/card0", "226:0"),
            _node(self.testbed, dev, "drm", "renderD128", "/dev/dri/renderD128", "226:128"),
        ])

    def remove(self, address: str) -> None:
        """Hot-unplug in the kernel's order: children first, then the device itself."""
        dev, children = self.devices.pop(address)
        for child in children:  # one by one: removing the parent leaves their class links
            self.testbed.uevent(child, "remove")
            self.testbed.remove_device(child)
        self.testbed.uevent(dev, "remove")
        self.testbed.remove_device(dev)


def build_box() -> Box:
    tb = UMockdev.Testbed.new()
    box = Box(tb, {})
    box.devices[NVIDIA_A] = (_pci(tb, NVIDIA_A, 0x10DE, 0x2330, 0x030200, "nvidia", 0), [])
    box.devices[NVIDIA_AUDIO] = (_pci(tb, NVIDIA_AUDIO, 0x10DE, 0x22A3, 0x040300,
                                      "snd_hda_intel", 0), [])
    box.add_nvidia_b()
    amd = _pci(tb, AMD, 0x1002, 0x744C, 0x030000, "amdgpu", 0,
               {"mem_info_vram_total": str(AMD_VRAM_TOTAL),
                "mem_info_vram_used": str(AMD_VRAM_USED)})
    box.devices[AMD] = (amd, [
        _node(tb, amd, "drm", "card1", "/dev/dri/card1", "226:1"),
        _node(tb, amd, "drm", "renderD129", "/dev/dri/renderD129", "226:129"),
    ])
    npu = _pci(tb, NPU, 0x8086, 0x7D1D, 0x120000, "intel_vpu", 0)
    box.devices[NPU] = (npu, [_node(tb, npu, "accel", "accel0", "/dev/accel/accel0", "261:0")])
    box.devices[NIC] = (_pci(tb, NIC, 0x8086, 0x15F3, 0x020000, "igc", 0), [])
    return box


DEV_NODES = ("nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm", "dri/card0", "dri/renderD128",
             "dri/card1", "dri/renderD129", "accel/accel0")


def fake_root(base: Path) -> Path:
    """A / with what the nvidia driver, nvidia-modprobe and udev would have made in /proc
    and /dev (sysfs comes from the testbed). Minors are deliberately not in PCI order."""
    for address, minor in MINORS.items():
        info = base / "proc" / "driver" / "nvidia" / "gpus" / address / "information"
        info.parent.mkdir(parents=True)
        info.write_text(f"Model: \t\t NVIDIA test GPU\nBus Location: \t {address}\n"
                        f"Device Minor: \t {minor}\nGPU Excluded:\t No\n")
    for name in DEV_NODES:
        node = base / "dev" / name
        node.parent.mkdir(parents=True, exist_ok=True)
        node.write_bytes(b"")
        node.chmod(0o666)
    return base
