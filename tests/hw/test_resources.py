"""The resource snapshot and its gauge values."""

from __future__ import annotations

import time
from pathlib import Path

from llmos.hw.gpu import GpuMemoryReader, NvidiaSmi
from llmos.hw.meminfo import locked_bytes
from llmos.hw.memory import MemoryPool
from llmos.hw.model import Accelerator, Inventory
from llmos.hw.resources import metric_samples, sample

MIB = 1024 * 1024


def test_snapshot_reports_models_pinned_memory_and_accelerators(tmp_path: Path) -> None:
    pool = MemoryPool(pin=True)
    view = pool.alloc("embed", 3 * MIB)
    view[:] = b"\x00" * (3 * MIB)
    gpu = Accelerator("0000:01:00.0", "nvidia", 0x10DE, 0x2330, 0x030200, "H100", "nvidia", 0,
                      (), memory_total_bytes=80 * 1024 * MIB, memory_used_bytes=MIB,
                      cuda_index=0)
    amd = Accelerator("0000:03:00.0", "amd", 0x1002, 0x744C, 0x030000, "RX", "amdgpu", 0, ())
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("HugePages_Total:  8\nHugePages_Free:  3\nHugepagesize:  2048 kB\n")

    snap = sample(pool, Inventory((gpu, amd)), meminfo=meminfo)
    assert snap.ram_total_bytes > snap.ram_available_bytes > 0
    assert snap.process_rss_bytes >= 3 * MIB  # the buffer is touched
    assert snap.process_locked_bytes == locked_bytes()
    assert (snap.hugepages_total, snap.hugepages_free, snap.hugepages_used) == (8, 3, 5)
    (model,) = snap.models
    assert model.owner == "embed" and model.bytes == 3 * MIB
    assert [(a.device, a.total_bytes) for a in snap.accelerators] == [
        ("cuda:0", 80 * 1024 * MIB), ("0000:03:00.0", None)]

    gauges = {(s.name, s.labels): s.value for s in metric_samples(snap)}
    assert gauges[("llmos_model_memory_bytes", (("model", "embed"),))] == 3 * MIB
    assert gauges[("llmos_hugepages_used", ())] == 5
    key = ("llmos_accelerator_memory_total_bytes",
           (("device", "cuda:0"), ("address", "0000:01:00.0")))
    assert gauges[key] == 80 * 1024 * MIB
    # Unknown figures are left out rather than reported as zero.
    assert not any(name.startswith("llmos_accelerator") and ("device", "0000:03:00.0") in labels
                   for name, labels in gauges)
    assert all(s.name.startswith("llmos_") and s.help for s in metric_samples(snap))
    del view
    pool.close()


def test_live_accelerator_memory_overrides_the_scan(tmp_path: Path) -> None:
    """nvidia-smi is read in the background, at most once per max_age_s; the snapshot
    takes its reading over the inventory's (as of the last scan)."""
    calls = tmp_path / "calls"
    tool = tmp_path / "nvidia-smi"
    tool.write_text(f'#!/bin/sh\necho x >> {calls}\n'
                    'echo "0, 00000000:01:00.0, H100, GPU-1, 81559, 1024, Enabled"\n')
    tool.chmod(0o755)
    reader = GpuMemoryReader(NvidiaSmi(str(tool)), max_age_s=60)
    assert reader.used() == {}  # the first reading is under way, not waited for
    deadline = time.monotonic() + 10
    while not (used := reader.used()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert used == {"0000:01:00.0": 1024 * 1024 * 1024}
    assert reader.used() == used and calls.read_text().count("x") == 1  # fresh: no rerun

    gpu = Accelerator("0000:01:00.0", "nvidia", 0x10DE, 0x2330, 0x030200, "H100", "nvidia", 0,
                      (), memory_total_bytes=81559 << 20, memory_used_bytes=0, cuda_index=0)
    snap = sample(None, Inventory((gpu,)), accelerators_used=used)
    assert [(a.device, a.used_bytes) for a in snap.accelerators] == [("cuda:0", 1 << 30)]
    assert sample(None, Inventory((gpu,))).accelerators[0].used_bytes == 0  # the scan's
