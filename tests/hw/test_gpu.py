"""On a machine with an NVIDIA GPU: the real inventory finds it and the supervisor claims it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from llmos.hw.claim import Claim, Claimer
from llmos.hw.gpu import NvidiaSmi, read_device_minors
from llmos.hw.inventory import InventorySource

pytestmark = pytest.mark.gpu


def test_inventory_finds_and_claims_the_nvidia_gpus(nvidia_gpu: None) -> None:
    smi = NvidiaSmi()
    if smi.path is None:
        pytest.skip("no NVIDIA GPU tools: nvidia-smi is not installed")
    nvml = smi.query()
    assert nvml, "nvidia-smi lists no GPU although the driver is loaded"

    inventory = InventorySource(smi=smi)()
    gpus = inventory.cuda()
    assert {g.address for g in gpus} == set(nvml)
    minors = read_device_minors()
    for gpu in gpus:
        assert gpu.driver == "nvidia" and gpu.vendor == "nvidia"
        assert gpu.memory_total_bytes == nvml[gpu.address].memory_total_bytes
        assert gpu.memory_total_bytes and gpu.memory_total_bytes > 0
        assert gpu.nodes[0].path == Path(f"/dev/nvidia{minors[gpu.address]}")

    claimer = Claimer(os.getuid(), os.getgid(), mode=0o660)
    for gpu in gpus:
        claim = claimer.claim(gpu)
        try:
            assert claim.nodes and _modes(claim) == {0o660}
            # Root can set persistence mode; a container may be refused: either is reported.
            assert claim.persistence.startswith("persistence mode")
            # Another NVIDIA client opens the GPU: the driver makes its files over unless
            # its DeviceFile* parameters are the claim's, and the claim said which.
            smi.query()
            held = _modes(claim) == {0o660}
            assert held == (claim.note == ""), (_modes(claim), claim.note)
        finally:
            claimer.release(claim)


def _modes(claim: Claim) -> set[int]:
    return {Path(n.path).stat().st_mode & 0o777 for n in claim.nodes}
