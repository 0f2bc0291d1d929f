"""A machine's PCI devices as the device controller sees them, for the admin tests: the
real inventory builder, controller and claimer, over a device list the test edits (hot-plug)
and a temporary /dev tree (the claimer chowns files there, not real device nodes)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from llmos.controllers.devices import DeviceController
from llmos.hw.claim import Claimer
from llmos.hw.inventory import build_inventory
from llmos.hw.model import DeviceNode, Inventory, NodeKind, PciDevice

GIB = 1024**3


def amd_gpu(address: str, card: int) -> PciDevice:
    nodes = (DeviceNode(Path(f"/dev/dri/card{card}"), NodeKind.DRM_CARD),
             DeviceNode(Path(f"/dev/dri/renderD{128 + card}"), NodeKind.DRM_RENDER))
    return PciDevice(address, 0x1002, 0x744C, 0x030000, "amdgpu", 0,
                     "Navi 31 [Radeon RX 7900 XTX]", nodes, 24 * GIB, 3 * GIB)


def npu(address: str) -> PciDevice:
    return PciDevice(address, 0x8086, 0x7D1D, 0x120000, "intel_vpu", 0, "Meteor Lake NPU",
                     (DeviceNode(Path("/dev/accel/accel0"), NodeKind.ACCEL),))


@dataclass
class Machine:
    root: Path
    devices: list[PciDevice] = field(default_factory=list)

    def plug(self, device: PciDevice) -> None:
        for node in device.nodes:
            real = self.root / str(node.path).lstrip("/")
            real.parent.mkdir(parents=True, exist_ok=True)
            real.touch()
        self.devices.append(device)

    def unplug(self, address: str) -> None:
        self.devices = [d for d in self.devices if d.address != address]

    def scan(self) -> Inventory:
        return build_inventory(self.devices,
                               present=lambda p: (self.root / str(p).lstrip("/")).exists())

    def controller(self) -> DeviceController:
        async def placed(_inventory: Inventory) -> None:
            return None

        return DeviceController(self.scan, placed, claimer=Claimer(root=self.root),
                                settle_s=0.01)
