"""udev inventory and hot-plug on emulated devices: the real pyudev path under umockdev.

Not collected on its own (the name does not start with test_): ``test_udev_emulated.py``
runs each case here in a child ``umockdev-wrapper python -m pytest`` whose libudev and
netlink sockets see the testbed instead of this machine.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from llmos.config import ModelConfig
from llmos.controllers.devices import DeviceController
from llmos.controllers.placement import Placement, PlacementState
from llmos.controllers.reconcile import Reconciler
from llmos.hw.claim import Claimer
from llmos.hw.gpu import NvidiaSmi
from llmos.hw.inventory import InventorySource
from llmos.hw.model import NodeKind, NodeOrigin
from llmos.hw.udev import UdevMonitor

from .emulated_box import (
    AMD,
    AMD_VRAM_TOTAL,
    AMD_VRAM_USED,
    NIC,
    NPU,
    NVIDIA_A,
    NVIDIA_AUDIO,
    NVIDIA_B,
    Box,
    UMockdev,
    build_box,
    fake_root,
)


@pytest.fixture
def box() -> Iterator[Box]:
    emulated = build_box()
    assert UMockdev.in_mock_environment(), "run under umockdev-wrapper"
    yield emulated


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return fake_root(tmp_path)


def _source(root: Path) -> InventorySource:
    # No nvidia-smi here: the NVIDIA GPUs' memory stays unknown (the gpu test covers NVML).
    return InventorySource(root=root, smi=NvidiaSmi("llmos-test-no-such-nvidia-smi"))


def test_inventory_of_a_multi_gpu_box(box: Box, root: Path) -> None:
    inv = _source(root)()

    by = {a.address: a for a in inv.accelerators}
    assert sorted(by) == [NVIDIA_A, NVIDIA_B, AMD, NPU]  # audio function and NIC ignored
    assert NVIDIA_AUDIO not in by and NIC not in by

    a, b, amd, npu = by[NVIDIA_A], by[NVIDIA_B], by[AMD], by[NPU]
    assert (a.vendor, a.driver, a.numa_node, a.cuda_device) == ("nvidia", "nvidia", 0, "cuda:0")
    assert (b.vendor, b.driver, b.numa_node, b.cuda_device) == ("nvidia", "nvidia", 1, "cuda:1")
    # /dev/nvidiaN follows the driver's device minor, not the PCI order.
    assert a.nodes[0].path == Path("/dev/nvidia1")
    assert a.nodes[0].origin is NodeOrigin.NVIDIA_PROC
    assert [(n.path, n.kind) for n in b.nodes] == [
        (Path("/dev/nvidia0"), NodeKind.NVIDIA),
        (Path("/dev/dri/card0"), NodeKind.DRM_CARD),
        (Path("/dev/dri/renderD128"), NodeKind.DRM_RENDER),
    ]
    assert (amd.vendor, amd.driver, amd.cuda_index) == ("amd", "amdgpu", None)
    assert [str(n.path) for n in amd.nodes] == ["/dev/dri/card1", "/dev/dri/renderD129"]
    assert (amd.memory_total_bytes, amd.memory_used_bytes) == (AMD_VRAM_TOTAL, AMD_VRAM_USED)
    assert (npu.vendor, npu.driver) == ("generic", "intel_vpu")
    assert [(str(n.path), n.kind) for n in npu.nodes] == [("/dev/accel/accel0", NodeKind.ACCEL)]
    assert [n.path.name for n in inv.shared_nodes] == ["nvidiactl", "nvidia-uvm"]


async def test_monitor_reports_add_and_remove(box: Box, root: Path) -> None:
    monitor = UdevMonitor()
    monitor.start()
    got: asyncio.Queue[tuple[str, str, str | None]] = asyncio.Queue()

    def readable() -> None:
        for e in monitor.drain():
            got.put_nowait((e.action, e.subsystem, e.address))

    loop = asyncio.get_running_loop()
    loop.add_reader(monitor.fileno(), readable)
    try:
        box.remove(NVIDIA_B)
        seen = [await asyncio.wait_for(got.get(), 5) for _ in range(3)]
        box.add_nvidia_b()
        seen += [await asyncio.wait_for(got.get(), 5) for _ in range(3)]
    finally:
        loop.remove_reader(monitor.fileno())
        monitor.close()
    assert seen == [
        ("remove", "drm", NVIDIA_B), ("remove", "drm", NVIDIA_B), ("remove", "pci", NVIDIA_B),
        ("add", "pci", NVIDIA_B), ("add", "drm", NVIDIA_B), ("add", "drm", NVIDIA_B),
    ]


class Registry:
    """The supervisor's side of the reconciler, reduced to readiness bookkeeping."""

    def __init__(self) -> None:
        self.ready: dict[str, str] = {}  # model -> device it serves on
        self.status: dict[str, Placement] = {}
        self.log: list[tuple[str, str]] = []

    async def drain(self, model: str, reason: str) -> None:
        self.ready.pop(model, None)
        self.log.append(("drain", model))

    async def place(self, placement: Placement) -> None:
        assert placement.device is not None
        self.ready[placement.model] = placement.device
        self.status[placement.model] = placement
        self.log.append(("load", placement.model))

    async def mark_unavailable(self, placement: Placement) -> None:
        self.ready.pop(placement.model, None)
        self.status[placement.model] = placement
        self.log.append(("unavailable", placement.model))


async def _until(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


MODELS = (
    ModelConfig("chat", Path("chat.pack"), device="cuda:0"),
    ModelConfig("embed", Path("embed.pack"), device="cuda:1"),
    ModelConfig("tiny", Path("tiny.pack"), device="cuda:1", cpu_fallback=True),
    ModelConfig("anywhere", Path("anywhere.pack"), device="any"),
)


async def test_hotplug_changes_placement_and_readiness(box: Box, root: Path) -> None:
    registry = Registry()
    reconciler = Reconciler(MODELS, registry)
    # Claiming gives the nodes to the service user (only root may give them to another).
    service_uid, service_gid = (4242, 4343) if os.geteuid() == 0 else (os.getuid(), os.getgid())
    controller = DeviceController(
        _source(root), reconciler, monitor=UdevMonitor.try_open(),
        claimer=Claimer(service_uid, service_gid, mode=0o660, root=root), settle_s=0.1)

    await controller.start()
    try:
        # Start-up: everything placed; "anywhere" balances onto the less loaded cuda:0.
        assert registry.ready == {"chat": "cuda:0", "embed": "cuda:1", "tiny": "cuda:1",
                                  "anywhere": "cuda:0"}
        for node in ("nvidia0", "nvidia1", "nvidiactl", "dri/card0", "dri/renderD129",
                     "accel/accel0"):
            st = (root / "dev" / node).stat()
            assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (service_uid, service_gid,
                                                                   0o660), node
        assert {c.address for c in controller.claims()} == {NVIDIA_A, NVIDIA_B, AMD, NPU,
                                                             "shared"}

        box.remove(NVIDIA_B)  # cuda:1 is unplugged
        await _until(lambda: "tiny" in registry.ready and registry.ready["tiny"] == "cpu",
                     "tiny to fall back to the CPU")
        assert registry.ready == {"chat": "cuda:0", "tiny": "cpu", "anywhere": "cuda:0"}
        assert registry.status["embed"].state is PlacementState.UNAVAILABLE
        assert "cuda:1 is absent" in registry.status["embed"].reason
        assert registry.status["tiny"].state is PlacementState.FALLBACK
        assert "cpu_fallback" in registry.status["tiny"].reason
        assert reconciler.plan.by_model()["chat"].accelerator == NVIDIA_A
        assert controller.inventory.by_address(NVIDIA_B) is None
        assert NVIDIA_B not in {c.address for c in controller.claims()}
        history = controller.history()
        assert [(h.action, h.device) for h in history if h.action in ("remove", "removed")][-2:] \
            == [("remove", NVIDIA_B), ("removed", NVIDIA_B)]
        assert all(earlier.at <= later.at for earlier, later in itertools.pairwise(history))

        registry.log.clear()
        box.add_nvidia_b()  # and plugged back in
        await _until(lambda: registry.ready.get("embed") == "cuda:1", "embed to come back")
        await _until(lambda: registry.ready.get("tiny") == "cuda:1", "tiny to return to cuda:1")
        assert registry.ready == {"chat": "cuda:0", "embed": "cuda:1", "tiny": "cuda:1",
                                  "anywhere": "cuda:0"}
        # Only the models the GPU concerns were touched; the others never stopped serving.
        assert sorted(registry.log) == [("drain", "tiny"), ("load", "embed"), ("load", "tiny")]
        assert [h.action for h in controller.history()][-1] == "added"
    finally:
        await controller.stop()
    st = (root / "dev" / "nvidia1").stat()  # released on stop: owner and mode as before
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (os.getuid(), os.getgid(), 0o666)
