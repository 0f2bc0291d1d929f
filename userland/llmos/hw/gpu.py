"""The NVIDIA driver's user-space interfaces: ``nvidia-smi`` (NVML) and /proc/driver/nvidia.

``/dev/nvidiaN`` is made by nvidia-modprobe, not udev, so a GPU's node is found from its
device minor, which the driver writes to /proc/driver/nvidia/gpus/<address>/information.
Parsers are pure functions; the I/O wrappers around them are thin.
"""

from __future__ import annotations

import csv
import logging
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

MIB = 1024 * 1024
QUERY_FIELDS = ("index", "pci.bus_id", "name", "uuid", "memory.total", "memory.used",
                "persistence_mode")
# Nodes every NVIDIA GPU shares (created by nvidia-modprobe / nvidia-uvm).
SHARED_NODE_NAMES = ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset")


@dataclass(frozen=True)
class NvidiaGpuInfo:
    address: str  # normalised PCI address, "0000:01:00.0"
    index: int  # nvidia-smi index
    name: str
    uuid: str
    memory_total_bytes: int | None
    memory_used_bytes: int | None
    persistence_mode: bool | None


def normalize_bus_id(bus_id: str) -> str:
    """nvidia-smi's "00000000:01:00.0" -> sysfs's "0000:01:00.0" (lower case)."""
    domain, _, rest = bus_id.strip().lower().partition(":")
    return f"{int(domain, 16):04x}:{rest}" if rest else bus_id.strip().lower()


def _mib(text: str) -> int | None:
    try:
        return int(float(text)) * MIB
    except ValueError:  # "[N/A]", "[Not Supported]"
        return None


def _enabled(text: str) -> bool | None:
    return {"enabled": True, "disabled": False}.get(text.strip().lower())


def parse_query(text: str) -> dict[str, NvidiaGpuInfo]:
    """Parse ``nvidia-smi --query-gpu=<QUERY_FIELDS> --format=csv,noheader,nounits``."""
    out: dict[str, NvidiaGpuInfo] = {}
    for row in csv.reader(text.splitlines(), skipinitialspace=True):
        if len(row) != len(QUERY_FIELDS):
            continue
        index, bus_id, name, uuid, total, used, persistence = (c.strip() for c in row)
        info = NvidiaGpuInfo(normalize_bus_id(bus_id), int(index), name, uuid,
                             _mib(total), _mib(used), _enabled(persistence))
        out[info.address] = info
    return out


def parse_information(text: str) -> int | None:
    """The "Device Minor" of one /proc/driver/nvidia/gpus/*/information file."""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Device Minor":
            try:
                return int(value.strip())
            except ValueError:
                return None
    return None


def read_device_minors(proc_root: Path = Path("/proc")) -> dict[str, int]:
    """PCI address -> device minor, for every GPU the loaded nvidia driver knows."""
    gpus = proc_root / "driver" / "nvidia" / "gpus"
    out: dict[str, int] = {}
    if not gpus.is_dir():
        return out
    for entry in sorted(gpus.iterdir()):
        try:
            minor = parse_information((entry / "information").read_text())
        except OSError:
            continue
        if minor is not None:
            out[normalize_bus_id(entry.name)] = minor
    return out


def read_driver_params(proc_root: Path = Path("/proc")) -> dict[str, str]:
    """The loaded nvidia driver's parameters (/proc/driver/nvidia/params), {} without it."""
    try:
        text = (proc_root / "driver" / "nvidia" / "params").read_text()
    except OSError:
        return {}
    return {k.strip(): v.strip() for k, _, v in
            (line.partition(":") for line in text.splitlines()) if k.strip()}


def device_file_drift(params: dict[str, str], uid: int, gid: int, mode: int) -> str:
    """Why the driver will undo a claim of its device files ("" when it will not, pure).

    With ``ModifyDeviceFiles`` on (the default), every NVIDIA client (nvidia-smi, CUDA)
    makes the files over with the driver's ``DeviceFileUID/GID/Mode`` when it opens them."""
    if params.get("ModifyDeviceFiles", "0") != "1":
        return ""
    try:
        want = (int(params["DeviceFileUID"]), int(params["DeviceFileGID"]),
                int(params["DeviceFileMode"]))
    except (KeyError, ValueError):
        return ""
    if want == (uid, gid, mode):
        return ""
    return (f"the nvidia driver resets its device files to uid {want[0]}, gid {want[1]}, "
            f"mode {want[2]:o} whenever a client opens them (ModifyDeviceFiles=1): set "
            f"'options nvidia NVreg_DeviceFileUID={uid} NVreg_DeviceFileGID={gid} "
            f"NVreg_DeviceFileMode=0{mode:o}' in /etc/modprobe.d (the nvidia image does)")


class NvidiaSmi:
    """Runs nvidia-smi when it is installed; every call degrades to "unknown" when not."""

    def __init__(self, executable: str = "nvidia-smi", timeout_s: float = 15.0) -> None:
        self._executable = executable
        self._timeout_s = timeout_s

    @property
    def path(self) -> str | None:
        return shutil.which(self._executable)

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        exe = self.path
        if exe is None:
            raise FileNotFoundError(f"{self._executable} is not installed")
        return subprocess.run([exe, *args], capture_output=True, text=True,
                              timeout=self._timeout_s, check=False)

    def query(self) -> dict[str, NvidiaGpuInfo]:
        """PCI address -> what NVML says about that GPU ({} without nvidia-smi)."""
        if self.path is None:
            return {}
        try:
            done = self._run(f"--query-gpu={','.join(QUERY_FIELDS)}",
                             "--format=csv,noheader,nounits")
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("nvidia-smi query failed: %s", exc)
            return {}
        if done.returncode != 0:
            log.warning("nvidia-smi query exited %d: %s", done.returncode, done.stderr.strip())
            return {}
        return parse_query(done.stdout)

    def enable_persistence(self, address: str) -> tuple[bool, str]:
        """``nvidia-smi -i <address> -pm 1``: (done, what happened)."""
        try:
            done = self._run("-i", address, "-pm", "1")
        except (OSError, subprocess.TimeoutExpired) as exc:
            return False, f"persistence mode not set: {exc}"
        text = (done.stdout + done.stderr).strip()
        if done.returncode != 0:
            return False, f"persistence mode not set: nvidia-smi exited {done.returncode}: {text}"
        return True, "persistence mode enabled"


class GpuMemoryReader:
    """The NVIDIA GPUs' memory in use, as of the last nvidia-smi reading.

    ``used()`` answers at once with the last reading and, when that is older than
    ``max_age_s``, starts a new one in a thread: a metrics scrape never waits for
    nvidia-smi, and reads it at most once per ``max_age_s``."""

    def __init__(self, smi: NvidiaSmi, max_age_s: float = 5.0) -> None:
        self._smi = smi
        self._max_age_s = max_age_s
        self._lock = threading.Lock()
        self._used: dict[str, int] = {}
        self._read_at = float("-inf")
        self._reading = False

    def used(self) -> dict[str, int]:
        """PCI address -> bytes in use ({} until the first reading is in)."""
        with self._lock:
            stale = time.monotonic() - self._read_at > self._max_age_s
            if stale and not self._reading:
                self._reading = True
                threading.Thread(target=self._read, name="llmos-gpu-memory",
                                 daemon=True).start()
            return dict(self._used)

    def _read(self) -> None:
        found: dict[str, int] | None = None
        try:
            found = {a: g.memory_used_bytes for a, g in self._smi.query().items()
                     if g.memory_used_bytes is not None}
        finally:  # a failed reading keeps the last one; the next used() tries again
            with self._lock:
                if found is not None:
                    self._used = found
                self._read_at, self._reading = time.monotonic(), False
