"""Memory for decrypted weights: a hugepage pool and pinned anonymous buffers.

``MemoryPool.alloc(owner, nbytes)`` gives a ``memoryview`` over an anonymous mapping:
hugetlb pages (``MAP_HUGETLB``) when enough are free, else normal pages that are
``mlock``'ed when weights are pinned. Either way the mapping is excluded from core dumps
(plaintext weights must not reach the disk). ``pool.allocator(owner)`` is the ``alloc``
argument of ``llmos.pack.container.decompress_into``; ``pool.free(owner)`` unlocks and
unmaps everything that owner holds when its model unloads. ``pool.release(owner, views)``
gives back the whole pages under parts of a buffer the runtime no longer reads (weights it
has copied into its own prepacked form): their plaintext is dropped, the pages return to the
kernel (or to the hugepage pool), and a later read of them would see zeros.

``pool.lock_process()`` (the ``serve`` command, once) goes further: ``mlockall`` with
``MCL_ONFAULT`` pins every page the process touches from then on, so what the runtime makes
of the weights (onnxruntime's prepacked matrices, its arenas, the KV cache) is pinned too.

A fallback (no hugepages, no mlock) is never silent: it is logged, kept in
``pool.fallbacks()`` with the reason and the fix, and passed to ``on_fallback``
(a metrics hook).
"""

from __future__ import annotations

import ctypes
import logging
import mmap
import os
import resource
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from llmos.hw.meminfo import MEMINFO, read_hugepages

log = logging.getLogger(__name__)

MAP_HUGETLB = getattr(mmap, "MAP_HUGETLB", 0x40000)
MAP_POPULATE = getattr(mmap, "MAP_POPULATE", 0x8000)
HUGEPAGES_SYSFS = Path("/sys/kernel/mm/hugepages/hugepages-2048kB")
PAGE = mmap.PAGESIZE

FIX_HUGEPAGES = ("reserve 2 MiB hugepages: set memory.hugepages in the configuration (written "
                 "to nr_hugepages at start), or boot with hugepages=N on the kernel command line")
FIX_RESERVE = ("boot with hugepages=N on the kernel command line (reserved before memory "
               "fragments), or run the supervisor as root with /sys writable")
FIX_MLOCK = ("raise the locked-memory limit: LimitMEMLOCK=infinity in the service unit "
             "(ulimit -l unlimited in a shell), or grant CAP_IPC_LOCK")


@dataclass(frozen=True)
class Fallback:
    # "hugepages" (normal pages used), "reserve" (pool smaller), "mlock" (weights not pinned),
    # "mlockall" (the runtime's own copies not pinned)
    what: str
    reason: str
    fix: str
    count: int = 1


@dataclass(frozen=True)
class BufferRecord:
    owner: str  # the model name
    nbytes: int  # asked for
    mapped_bytes: int  # mapped (rounded up to the page size)
    hugepages: bool  # hugetlb pages: never swapped, not counted in VmLck
    locked: bool  # mlock'ed normal pages (counted in VmLck)
    released: int = 0  # bytes of whole pages given back (``MemoryPool.release``)

    @property
    def held_bytes(self) -> int:
        return self.mapped_bytes - self.released


@dataclass(frozen=True)
class OwnerUsage:
    owner: str
    buffers: int
    bytes: int  # mapped and not released: what the model holds
    hugepage_bytes: int
    locked_bytes: int
    released_bytes: int = 0  # given back once the runtime kept its own copy


@dataclass
class _Buffer:
    mm: mmap.mmap
    address: int
    record: BufferRecord


def _round_up(n: int, unit: int) -> int:
    return (max(n, 1) + unit - 1) // unit * unit


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, overlapping or touching [start, end) spans joined."""
    out: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def whole_pages(spans: list[tuple[int, int]], page: int) -> list[tuple[int, int]]:
    """The whole ``page``-aligned pages inside the union of ``spans`` (pure)."""
    pages = []
    for start, end in _merged(spans):
        first, last = -(-start // page) * page, end // page * page
        if last > first:
            pages.append((first, last))
    return pages


MCL_CURRENT, MCL_FUTURE, MCL_ONFAULT = 1, 2, 4  # <sys/mman.h> on Linux
# glibc: blocks from this size on are mapped apart, so freeing them unmaps them. Without a
# fixed threshold glibc raises it to the largest block freed so far, and a locked process
# cannot hand freed heap pages back (madvise refuses locked pages): an unloaded model's
# prepacked weights would stay resident.
M_MMAP_THRESHOLD, MMAP_THRESHOLD = -3, 128 << 10
CAP_IPC_LOCK = 14


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    for name in ("mlock", "munlock"):
        fn = getattr(libc, name)
        fn.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
        fn.restype = ctypes.c_int
    libc.mlockall.argtypes = (ctypes.c_int,)
    libc.mlockall.restype = ctypes.c_int
    if hasattr(libc, "mallopt"):
        libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return libc


_LIBC = _libc()


def _address(buffer: mmap.mmap | memoryview) -> int:
    """The address of a writable buffer's first byte."""
    anchor = ctypes.c_char.from_buffer(buffer)  # a temporary export, dropped at once
    try:
        return ctypes.addressof(anchor)
    finally:
        del anchor


def _memlock_limit() -> str:
    soft, _ = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    return "unlimited" if soft == resource.RLIM_INFINITY else f"{soft} bytes"


def holds_ipc_lock(status: Path = Path("/proc/self/status")) -> bool:
    """This process holds CAP_IPC_LOCK (no locked-memory limit applies to it)."""
    try:
        fields = dict(line.split(":", 1) for line in status.read_text().splitlines()
                      if ":" in line)
        return bool(int(fields["CapEff"].strip(), 16) >> CAP_IPC_LOCK & 1)
    except (OSError, KeyError, ValueError):
        return False


def may_lock_everything() -> bool:
    """No locked-memory limit applies: RLIMIT_MEMLOCK unlimited, or CAP_IPC_LOCK held."""
    return (resource.getrlimit(resource.RLIMIT_MEMLOCK)[0] == resource.RLIM_INFINITY
            or holds_ipc_lock())


def _advise(mm: mmap.mmap, *names: str) -> None:
    for name in names:
        advice = getattr(mmap, name, None)
        if advice is None:
            continue
        try:
            mm.madvise(advice)
        except OSError as exc:  # e.g. transparent hugepages disabled
            log.debug("madvise(%s) refused: %s", name, exc)


class MemoryPool:
    def __init__(
        self,
        *,
        pin: bool = True,
        hugepages: int = 0,
        sysfs_dir: Path = HUGEPAGES_SYSFS,
        meminfo: Path = MEMINFO,
        on_fallback: Callable[[Fallback], None] | None = None,
    ) -> None:
        self.pin = pin
        self.hugepages = hugepages
        self._sysfs_dir = sysfs_dir
        self._meminfo = meminfo
        self._on_fallback = on_fallback
        self._lock = threading.Lock()
        self._buffers: dict[str, list[_Buffer]] = {}
        self._fallbacks: dict[str, Fallback] = {}

    # --- fallbacks --------------------------------------------------------------------
    def _fallback(self, what: str, reason: str, fix: str) -> None:
        with self._lock:
            seen = self._fallbacks.get(what)
            record = Fallback(what, reason, fix, 1 if seen is None else seen.count + 1)
            self._fallbacks[what] = record
        level = logging.WARNING if seen is None or seen.reason != reason else logging.DEBUG
        log.log(level, "memory fallback (%s): %s; to fix: %s", what, reason, fix)
        if self._on_fallback is not None:
            self._on_fallback(record)

    def fallbacks(self) -> tuple[Fallback, ...]:
        """The latest fallback of each kind, with how often it happened."""
        with self._lock:
            return tuple(self._fallbacks.values())

    # --- the hugepage pool --------------------------------------------------------------
    def reserve(self) -> int:
        """Raise nr_hugepages to ``hugepages`` if the kernel has fewer; the total now."""
        nr = self._sysfs_dir / "nr_hugepages"
        try:
            current = int(nr.read_text())
        except OSError as exc:
            if self.hugepages:
                self._fallback("reserve", f"cannot read {nr}: {exc}", FIX_RESERVE)
            return 0
        if self.hugepages <= current:
            return current
        try:
            nr.write_text(f"{self.hugepages}\n")
            got = int(nr.read_text())
        except OSError as exc:
            self._fallback("reserve", f"could not raise {nr} from {current} to "
                           f"{self.hugepages}: {exc}", FIX_RESERVE)
            return current
        if got < self.hugepages:
            self._fallback("reserve", f"asked the kernel for {self.hugepages} hugepages, it "
                           f"reserved {got} (memory too fragmented)", FIX_RESERVE)
        else:
            log.info("reserved %d hugepages (were %d)", got, current)
        return got

    def lock_process(self) -> bool:
        """Pin every page this process has or touches from now on (``mlockall`` with
        ``MCL_ONFAULT``: nothing is faulted in ahead). Only where no limit applies: under a
        finite RLIMIT_MEMLOCK, ``MCL_FUTURE`` would make allocations fail past it."""
        if not self.pin:
            return False
        if not may_lock_everything():
            self._fallback("mlockall", "the runtime's own copies of the weights (prepacked "
                           "matrices, arenas, caches) are not pinned: RLIMIT_MEMLOCK is "
                           f"{_memlock_limit()} and CAP_IPC_LOCK is not held", FIX_MLOCK)
            return False
        if _LIBC.mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) != 0:
            err = ctypes.get_errno()
            self._fallback("mlockall", f"mlockall failed: {os.strerror(err)}", FIX_MLOCK)
            return False
        if hasattr(_LIBC, "mallopt"):
            _LIBC.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        log.info("process memory locked: every page is pinned once touched")
        return True

    # --- buffers -------------------------------------------------------------------------
    def _hugetlb(self, nbytes: int) -> mmap.mmap | None:
        counters = read_hugepages(self._meminfo)
        pages = _round_up(nbytes, counters.page_bytes) // counters.page_bytes
        if counters.available < pages:
            self._fallback("hugepages", f"{pages} free hugepages of {counters.page_bytes >> 10} "
                           f"KiB needed, {counters.available} available "
                           f"(HugePages_Total={counters.total})", FIX_HUGEPAGES)
            return None
        flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | MAP_HUGETLB | MAP_POPULATE
        try:
            return mmap.mmap(-1, pages * counters.page_bytes, flags=flags)
        except OSError as exc:
            self._fallback("hugepages", f"mmap(MAP_HUGETLB) of {pages} pages failed: {exc}",
                           FIX_HUGEPAGES)
            return None

    def _mlock(self, mm: mmap.mmap, address: int) -> bool:
        if _LIBC.mlock(address, len(mm)) == 0:
            return True
        err = ctypes.get_errno()
        self._fallback("mlock", f"mlock of {len(mm)} bytes failed: {os.strerror(err)} "
                       f"(RLIMIT_MEMLOCK {_memlock_limit()})", FIX_MLOCK)
        return False

    def alloc(self, owner: str, nbytes: int) -> memoryview:
        """A writable buffer of ``nbytes`` for ``owner`` (the model name)."""
        mm = self._hugetlb(nbytes) if self.pin else None
        hugepages = mm is not None
        if mm is None:
            mm = mmap.mmap(-1, _round_up(nbytes, PAGE),
                           flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
            _advise(mm, "MADV_HUGEPAGE")
        _advise(mm, "MADV_DONTDUMP")
        address = _address(mm)
        locked = not hugepages and self.pin and self._mlock(mm, address)
        record = BufferRecord(owner, nbytes, len(mm), hugepages, locked)
        with self._lock:
            self._buffers.setdefault(owner, []).append(_Buffer(mm, address, record))
        log.debug("alloc %s: %d bytes (%s%s)", owner, nbytes,
                  "hugepages" if hugepages else "normal pages", ", locked" if locked else "")
        return memoryview(mm)[:nbytes]

    def allocator(self, owner: str) -> Callable[[int], memoryview]:
        """``alloc`` bound to one owner: pass it to ``decompress_into``."""
        def alloc(nbytes: int) -> memoryview:
            return self.alloc(owner, nbytes)
        return alloc

    def release(self, owner: str, views: list[memoryview]) -> int:
        """Give back the whole pages under ``views`` (parts of ``owner``'s buffers that
        nothing reads any more); the bytes released. Partial pages at the edges stay."""
        page_of_hugepages = read_hugepages(self._meminfo).page_bytes
        released = 0
        with self._lock:
            for buf in self._buffers.get(owner, []):
                end = buf.address + buf.record.mapped_bytes
                spans = []
                for view in views:
                    start = _address(view)
                    if buf.address <= start < end:
                        spans.append((start - buf.address, start - buf.address + view.nbytes))
                page = page_of_hugepages if buf.record.hugepages else PAGE
                got = 0
                for first, last in whole_pages(spans, page):
                    if not buf.record.hugepages:  # locked by us or by lock_process
                        _LIBC.munlock(buf.address + first, last - first)
                    buf.mm.madvise(mmap.MADV_DONTNEED, first, last - first)
                    got += last - first
                buf.record = replace(buf.record, released=buf.record.released + got)
                released += got
        if released:
            log.info("%s: released %d bytes of weights the runtime keeps in its own form",
                     owner, released)
        return released

    def releaser(self, owner: str) -> Callable[[list[memoryview]], int]:
        """``release`` bound to one owner (what a backend gets)."""
        def release(views: list[memoryview]) -> int:
            return self.release(owner, views)
        return release

    def free(self, owner: str) -> int:
        """Unlock and unmap every buffer of ``owner``; the bytes released."""
        with self._lock:
            buffers = self._buffers.pop(owner, [])
        released = 0
        for buf in buffers:
            if buf.record.locked:
                _LIBC.munlock(buf.address, buf.record.mapped_bytes)
            released += buf.record.mapped_bytes
            try:
                buf.mm.close()
            except BufferError:  # views still alive: unmapped when the last one goes
                log.warning("%s: a %d-byte buffer is still referenced after unload; it is "
                            "unmapped when its last view is dropped", owner, buf.record.nbytes)
        if buffers:
            log.info("freed %d bytes of %s", released, owner)
        return released

    def rename(self, owner: str, new: str) -> None:
        """Hand ``owner``'s buffers to ``new`` (a model's new version, loaded beside the
        old one under a name of its own, keeps them under the model's name once the old
        version is freed)."""
        with self._lock:
            moved = self._buffers.pop(owner, [])
            for buf in moved:
                buf.record = replace(buf.record, owner=new)
            self._buffers.setdefault(new, []).extend(moved)

    def close(self) -> None:
        for owner in list(self._buffers):
            self.free(owner)

    # --- accounting ----------------------------------------------------------------------
    def buffers(self) -> tuple[BufferRecord, ...]:
        with self._lock:
            return tuple(b.record for bufs in self._buffers.values() for b in bufs)

    def usage(self) -> tuple[OwnerUsage, ...]:
        """Memory per owner (model), sorted by name."""
        by_owner: dict[str, OwnerUsage] = {}
        for r in self.buffers():
            u = by_owner.get(r.owner) or OwnerUsage(r.owner, 0, 0, 0, 0)
            by_owner[r.owner] = replace(
                u, buffers=u.buffers + 1, bytes=u.bytes + r.held_bytes,
                hugepage_bytes=u.hugepage_bytes + (r.held_bytes if r.hugepages else 0),
                locked_bytes=u.locked_bytes + (r.held_bytes if r.locked else 0),
                released_bytes=u.released_bytes + r.released)
        return tuple(by_owner[k] for k in sorted(by_owner))
