"""Weight memory: hugepages when free, else mlock'ed normal pages, explicit fallbacks, free."""

from __future__ import annotations

import ctypes
import hashlib
import json
import mmap
import os
import resource
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmos.hw.meminfo import locked_bytes, parse_kv, read_hugepages
from llmos.hw.memory import HUGEPAGES_SYSFS, Fallback, MemoryPool, whole_pages
from llmos.pack import container
from llmos.pack.manifest import Manifest

MIB = 1024 * 1024
CAP_IPC_LOCK = 14


def _has_cap_ipc_lock() -> bool:
    status = Path("/proc/self/status").read_text()
    cap_eff = next(line.split()[1] for line in status.splitlines() if line.startswith("CapEff"))
    return bool(int(cap_eff, 16) >> CAP_IPC_LOCK & 1)


def _can_lock(nbytes: int) -> bool:
    soft, _ = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    room = soft == resource.RLIM_INFINITY or soft - locked_bytes() >= nbytes
    return _has_cap_ipc_lock() or room


def _address(view: memoryview) -> int:
    anchor = ctypes.c_char.from_buffer(view)
    try:
        return ctypes.addressof(anchor)
    finally:
        del anchor


def _mapped(address: int) -> bool:
    for line in Path("/proc/self/maps").read_text().splitlines():
        lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
        if lo <= address < hi:
            return True
    return False


def test_meminfo_parser() -> None:
    got = parse_kv("MemTotal:  16 kB\nHugePages_Total:  3\nHugepagesize:  2048 kB\nbad line\n")
    assert got == {"MemTotal": 16 * 1024, "HugePages_Total": 3, "Hugepagesize": 2 * MIB}


def test_unpinned_buffers_are_plain_and_freed() -> None:
    pool = MemoryPool(pin=False)
    view = pool.alloc("m", MIB + 1)
    view[:5] = b"hello"
    view[-1:] = b"!"
    assert len(view) == MIB + 1
    (record,) = pool.buffers()
    assert (record.hugepages, record.locked, record.mapped_bytes) == (False, False, MIB + 4096)
    assert pool.fallbacks() == ()
    address = _address(view)
    view.release()
    assert pool.free("m") == MIB + 4096
    assert not _mapped(address) and pool.buffers() == () and pool.usage() == ()


def test_no_free_hugepages_is_an_explicit_fallback_and_the_buffer_is_mlocked() -> None:
    counters = read_hugepages()
    nbytes = (counters.available + 1) * counters.page_bytes  # more than the pool has free
    seen: list[Fallback] = []
    pool = MemoryPool(pin=True, on_fallback=seen.append)
    locked_before = locked_bytes()
    can_lock = _can_lock(nbytes)

    view = pool.alloc("chat", nbytes)
    view[:] = b"\xab" * nbytes  # every page is usable
    (record,) = pool.buffers()
    assert record.hugepages is False
    hugepages = next(f for f in pool.fallbacks() if f.what == "hugepages")
    assert f"{counters.available} available" in hugepages.reason
    assert "hugepages=N" in hugepages.fix and "memory.hugepages" in hugepages.fix
    assert seen[0] == hugepages
    assert record.locked is can_lock
    if can_lock:
        assert locked_bytes() - locked_before >= nbytes  # accounted in VmLck
        assert pool.usage()[0].locked_bytes == record.mapped_bytes
    del view
    pool.free("chat")
    assert locked_bytes() == locked_before  # munlock'ed on free


def test_free_with_views_still_alive_unlocks_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    pool = MemoryPool(pin=True)
    nbytes = 2 * MIB
    locked_before = locked_bytes()
    view = pool.alloc("m", nbytes)
    weights = view[MIB:]  # what a runtime keeps (split_files gives such slices)
    weights[:4] = b"ok!!"
    pool.free("m")
    assert locked_bytes() == locked_before
    assert "still referenced" in caplog.text
    assert bytes(weights[:4]) == b"ok!!"  # not unmapped under a live view
    address = _address(weights)
    del view, weights
    assert not _mapped(address)  # unmapped with its last view


def test_pool_is_a_decompress_into_allocator() -> None:
    files = {"model.onnx": os.urandom(300_000), "tokenizer.json": b"{}" * 1000}
    entries, payload = container.build_payload(files)
    packed = container.compress(payload)
    manifest = Manifest("embed", "1", "embedding", "onnx", (), (), entries,
                        hashlib.sha256(payload).hexdigest(), len(payload), len(packed))
    pool = MemoryPool(pin=True)
    out = container.decompress_into([packed[:1000], packed[1000:]], manifest,
                                    pool.allocator("embed"))
    split = container.split_files(manifest, out)
    assert bytes(split["model.onnx"]) == files["model.onnx"]
    (usage,) = pool.usage()
    assert usage.owner == "embed" and usage.bytes >= len(payload)
    del out, split
    pool.close()
    assert pool.usage() == ()


def test_reserve_reports_an_unusable_pool(tmp_path: Path) -> None:
    seen: list[Fallback] = []
    pool = MemoryPool(hugepages=4, sysfs_dir=tmp_path / "absent", on_fallback=seen.append)
    assert pool.reserve() == 0
    assert seen[0].what == "reserve" and "cannot read" in seen[0].reason
    assert "hugepages=N" in seen[0].fix


MLOCK_CHILD = """
import json, resource
resource.setrlimit(resource.RLIMIT_MEMLOCK, (65536, 65536))
from llmos.hw.memory import MemoryPool
pool = MemoryPool(pin=True)
view = pool.alloc("m", 1 << 20)
view[:2] = b"ok"
(record,) = pool.buffers()
mlock = [f for f in pool.fallbacks() if f.what == "mlock"]
print(json.dumps({"locked": record.locked, "reason": mlock[0].reason, "fix": mlock[0].fix}))
"""


def test_mlock_refused_is_an_explicit_fallback() -> None:
    cmd = [sys.executable, "-c", MLOCK_CHILD]
    if _has_cap_ipc_lock():  # root: drop CAP_IPC_LOCK so the memlock limit applies
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("setpriv (util-linux) is needed to drop CAP_IPC_LOCK for this test")
        cmd = [setpriv, "--bounding-set=-ipc_lock", *cmd]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert got["locked"] is False
    assert "mlock of 1048576 bytes failed" in got["reason"] and "65536 bytes" in got["reason"]
    assert "LimitMEMLOCK=infinity" in got["fix"]
    assert "memory fallback (mlock)" in done.stderr  # the log line


@pytest.fixture
def spare_hugepages() -> Iterator[int]:
    """Reserve 2 more hugepages for the test; put nr_hugepages back afterwards."""
    nr = HUGEPAGES_SYSFS / "nr_hugepages"
    if os.geteuid() != 0 or not os.access(nr, os.W_OK):
        pytest.skip(f"reserving hugepages needs root and a writable {nr}")
    original = int(nr.read_text())
    try:
        yield original + 2
    finally:
        nr.write_text(f"{original}\n")


def test_hugepage_path_takes_pages_from_the_pool(spare_hugepages: int) -> None:
    pool = MemoryPool(pin=True, hugepages=spare_hugepages)
    assert pool.reserve() >= spare_hugepages
    before = read_hugepages()
    assert before.available >= 2
    locked_before = locked_bytes()

    view = pool.alloc("llm", 3 * MIB)  # two 2 MiB pages
    view[:] = b"\x01" * (3 * MIB)
    (record,) = pool.buffers()
    assert (record.hugepages, record.locked, record.mapped_bytes) == (True, False, 4 * MIB)
    during = read_hugepages()
    assert before.free - during.free == 2  # populated at mmap time
    assert locked_bytes() == locked_before  # hugetlb pages are not in VmLck (never swapped)
    assert pool.usage()[0].hugepage_bytes == 4 * MIB
    assert [f.what for f in pool.fallbacks()] == []

    del view
    pool.free("llm")
    assert read_hugepages().free == before.free


def test_whole_pages_keeps_partial_pages_at_the_edges() -> None:
    page = 4096
    # Two touching spans join; the partial pages at both ends of the union stay.
    assert whole_pages([(100, 5000), (5000, 3 * page + 10)], page) == [(page, 3 * page)]
    assert whole_pages([(0, page - 1)], page) == []
    assert whole_pages([(2 * page, 4 * page), (0, page)], page) == [(0, page),
                                                                     (2 * page, 4 * page)]


def test_release_gives_pages_back_and_keeps_the_rest() -> None:
    page = mmap.PAGESIZE
    pool = MemoryPool(pin=True)
    view = pool.alloc("llm", 8 * page)
    view[:] = b"\x07" * (8 * page)
    (record,) = pool.buffers()
    locked_before = locked_bytes()
    # Two adjacent tensors from the middle of page 1 to the middle of page 5.
    parts = [view[page + 100:3 * page], view[3 * page:5 * page + 100]]
    assert pool.release("other", parts) == 0  # not its buffers
    assert pool.release("llm", parts) == 3 * page  # pages 2, 3 and 4
    assert bytes(view[2 * page:5 * page]) == bytes(3 * page)  # dropped: reads as zeros
    assert set(bytes(view[:2 * page])) == {7} and set(bytes(view[5 * page:])) == {7}
    usage = pool.usage()[0]
    assert (usage.bytes, usage.released_bytes) == (5 * page, 3 * page)
    if record.locked:
        assert locked_before - locked_bytes() == 3 * page  # VmLck follows
        assert usage.locked_bytes == 5 * page
    del view, parts
    pool.free("llm")


def test_release_returns_hugepages_to_the_pool(spare_hugepages: int) -> None:
    pool = MemoryPool(pin=True, hugepages=spare_hugepages)
    pool.reserve()
    view = pool.alloc("llm", 4 * MIB)
    (record,) = pool.buffers()
    if not record.hugepages:
        pytest.fail("no hugepages although the pool was reserved")
    during = read_hugepages()
    assert pool.release("llm", [view[MIB:4 * MIB]]) == 2 * MIB  # the second 2 MiB page
    assert read_hugepages().free == during.free + 1
    assert pool.usage()[0].hugepage_bytes == 2 * MIB
    del view
    pool.free("llm")
