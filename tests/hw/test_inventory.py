"""The match table, the pure inventory builder and the NVIDIA driver's interfaces."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from llmos.hw.gpu import (
    MIB,
    NvidiaGpuInfo,
    NvidiaSmi,
    normalize_bus_id,
    parse_information,
    parse_query,
    read_device_minors,
)
from llmos.hw.inventory import build_inventory
from llmos.hw.match import DEFAULT_RULES, MatchRule, match
from llmos.hw.model import DeviceNode, NodeKind, NodeOrigin, PciDevice, pci_address_of


@pytest.mark.parametrize(("vendor", "cls", "family"), [
    (0x10DE, 0x030000, "nvidia"),
    (0x10DE, 0x030200, "nvidia"),
    (0x10DE, 0x040300, None),  # the HDMI audio function of an NVIDIA card
    (0x1002, 0x030000, "amd"),
    (0x1002, 0x038000, "amd"),  # Instinct cards report "display controller, other"
    (0x8086, 0x030000, "intel"),
    (0x8086, 0x020000, None),  # an Intel NIC
    (0x1DA3, 0x120000, "generic"),  # any vendor's processing accelerator
    (0x1AF4, 0x010000, None),
])
def test_match_table(vendor: int, cls: int, family: str | None) -> None:
    rule = match(vendor, cls)
    assert (rule.vendor if rule else None) == family


def test_match_table_is_configurable() -> None:
    rules = (MatchRule("virtio", 0x1AF4, 0x010000, 0xFF0000, "virtio storage (for a demo)"),)
    assert match(0x1AF4, 0x010000, rules) is not None
    assert match(0x10DE, 0x030000, rules) is None
    assert len(DEFAULT_RULES) == 5


def _pci(address: str, vendor: int, cls: int, driver: str | None,
         vram_total_bytes: int | None = None, vram_used_bytes: int | None = None) -> PciDevice:
    return PciDevice(address, vendor, 0x1234, cls, driver, None, f"{vendor:04x}:1234",
                     vram_total_bytes=vram_total_bytes, vram_used_bytes=vram_used_bytes)


def test_cuda_ordinals_follow_pci_order_and_need_the_nvidia_driver() -> None:
    devices = [
        _pci("0000:41:00.0", 0x10DE, 0x030200, "nvidia"),
        _pci("0000:01:00.0", 0x10DE, 0x030200, "vfio-pci"),  # passed through to a VM
        _pci("0000:02:00.0", 0x10DE, 0x030000, "nvidia"),
        _pci("0000:03:00.0", 0x1002, 0x030000, "amdgpu", vram_total_bytes=8 * MIB),
    ]
    inv = build_inventory(devices, present=lambda p: True)
    assert [(a.address, a.cuda_device) for a in inv.accelerators] == [
        ("0000:01:00.0", None), ("0000:02:00.0", "cuda:0"), ("0000:03:00.0", None),
        ("0000:41:00.0", "cuda:1")]
    assert [a.address for a in inv.cuda()] == ["0000:02:00.0", "0000:41:00.0"]
    assert inv.by_address("0000:03:00.0").memory_total_bytes == 8 * MIB  # type: ignore[union-attr]
    assert [n.path.name for n in inv.shared_nodes] == ["nvidiactl", "nvidia-uvm",
                                                       "nvidia-uvm-tools", "nvidia-modeset"]


def test_nvidia_nodes_by_minor_else_by_pci_order_and_only_when_present() -> None:
    devices = [_pci("0000:02:00.0", 0x10DE, 0x030200, "nvidia"),
               _pci("0000:03:00.0", 0x10DE, 0x030200, "nvidia"),
               _pci("0000:04:00.0", 0x10DE, 0x030200, "nvidia")]
    present = {Path("/dev/nvidia7"), Path("/dev/nvidia1")}
    inv = build_inventory(devices, minors={"0000:02:00.0": 7}, present=present.__contains__)
    a, b, c = inv.accelerators
    assert a.nodes == (DeviceNode(Path("/dev/nvidia7"), NodeKind.NVIDIA, NodeOrigin.NVIDIA_PROC),)
    assert b.nodes == (DeviceNode(Path("/dev/nvidia1"), NodeKind.NVIDIA, NodeOrigin.PCI_ORDER),)
    assert c.nodes == ()  # /dev/nvidia2 not made (yet): not claimed, not listed
    assert inv.shared_nodes == ()


def test_nvml_gives_name_and_memory() -> None:
    devices = [_pci("0000:02:00.0", 0x10DE, 0x030200, "nvidia")]
    info = NvidiaGpuInfo("0000:02:00.0", 0, "NVIDIA H100 80GB HBM3", "GPU-1", 80 * 1024 * MIB,
                         1 * MIB, True)
    (gpu,) = build_inventory(devices, nvml={info.address: info},
                             present=lambda p: False).accelerators
    assert (gpu.model, gpu.memory_total_bytes, gpu.memory_used_bytes) == (
        "NVIDIA H100 80GB HBM3", 80 * 1024 * MIB, MIB)


def test_signature_ignores_memory_in_use() -> None:
    devices = [_pci("0000:03:00.0", 0x1002, 0x030000, "amdgpu", vram_used_bytes=1)]
    busy = [_pci("0000:03:00.0", 0x1002, 0x030000, "amdgpu", vram_used_bytes=2)]
    unbound = [_pci("0000:03:00.0", 0x1002, 0x030000, None)]
    sig = build_inventory(devices).signature()
    assert build_inventory(busy).signature() == sig
    assert build_inventory(unbound).signature() != sig


def test_pci_address_of_sysfs_paths() -> None:
    assert pci_address_of("/sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0/drm/card0") \
        == "0000:01:00.0"
    assert pci_address_of("/sys/devices/0000:03:00.0") == "0000:03:00.0"
    assert pci_address_of("/sys/devices/virtual/misc/tun") is None


SMI_OUTPUT = (
    "0, 00000000:1B:00.0, NVIDIA H100 80GB HBM3, GPU-9c3f0b7e-1111, 81559, 4, Enabled\n"
    "1, 00000000:9A:00.0, NVIDIA H100 80GB HBM3, GPU-0d1e2f3a-2222, 81559, [N/A], Disabled\n"
)


def test_parse_nvidia_smi_query() -> None:
    got = parse_query(SMI_OUTPUT)
    assert list(got) == ["0000:1b:00.0", "0000:9a:00.0"]
    first, second = got.values()
    assert (first.index, first.memory_total_bytes, first.memory_used_bytes,
            first.persistence_mode) == (0, 81559 * MIB, 4 * MIB, True)
    assert (second.memory_used_bytes, second.persistence_mode) == (None, False)
    assert normalize_bus_id("00000000:01:00.0") == "0000:01:00.0"
    assert parse_query("garbage\n") == {}


def test_device_minors_from_proc(tmp_path: Path) -> None:
    gpus = tmp_path / "driver" / "nvidia" / "gpus"
    for address, minor in (("0000:1b:00.0", 3), ("0000:9a:00.0", 0)):
        (gpus / address).mkdir(parents=True)
        (gpus / address / "information").write_text(
            f"Model: \t\t NVIDIA H100\nDevice Minor: \t {minor}\nBus Type: \t PCIe\n")
    assert read_device_minors(tmp_path) == {"0000:1b:00.0": 3, "0000:9a:00.0": 0}
    assert read_device_minors(tmp_path / "nothing") == {}
    assert parse_information("Model: x\n") is None


def _executable(path: Path, script: str) -> Path:
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_nvidia_smi_adapter_runs_the_tool(tmp_path: Path) -> None:
    # A stand-in for the driver's tool on a machine without one: it records its arguments.
    args = tmp_path / "args"
    tool = _executable(tmp_path / "nvidia-smi", f'echo "$@" >> {args}\n'
                       f'case "$1" in --query-gpu=*) printf "%s" "{SMI_OUTPUT}";; esac\n')
    smi = NvidiaSmi(str(tool))
    assert set(smi.query()) == {"0000:1b:00.0", "0000:9a:00.0"}
    assert smi.enable_persistence("0000:1b:00.0") == (True, "persistence mode enabled")
    lines = args.read_text().splitlines()
    assert lines[0] == ("--query-gpu=index,pci.bus_id,name,uuid,memory.total,memory.used,"
                        "persistence_mode --format=csv,noheader,nounits")
    assert lines[1] == "-i 0000:1b:00.0 -pm 1"


def test_nvidia_smi_failures_degrade(tmp_path: Path) -> None:
    failing = _executable(tmp_path / "nvidia-smi", "echo 'Insufficient Permissions' >&2\nexit 4\n")
    ok, why = NvidiaSmi(str(failing)).enable_persistence("0000:01:00.0")
    assert not ok and "exited 4" in why and "Insufficient Permissions" in why
    assert NvidiaSmi(str(failing)).query() == {}
    missing = NvidiaSmi(os.fspath(tmp_path / "no-such-tool"))
    assert missing.path is None and missing.query() == {}
    assert missing.enable_persistence("0000:01:00.0")[0] is False
