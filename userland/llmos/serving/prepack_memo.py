"""What this machine has learnt about prepacking: the packs whose weights its kernels read
in place.

Where onnxruntime's kernels cannot prepack a model's weights on this CPU (int8 and 4-bit
kernels without AVX2 and FMA: older Atoms and Celerons, an emulated CPU without FMA), the
loader learns it only by building the model, giving the weights back and seeing the
warm-up answer change; it then opens the pack again and builds it with prepacking off
(``llmos.serving.loading``). That is a second decryption, session and warm-up on every
start (in the emulated test guest, start to READY=1 took 32.4 s when learning against
22.4 s once learnt: bench/BOOT.md). The loader keeps the verdict here, per pack (its
sha256) and per machine (the CPU's model and flags, the runtimes' versions), so the next
start builds such a pack unprepacked at once; a new CPU or runtime starts afresh.

A verdict only ever turns prepacking off, which is always correct: the cost is decoding
speed and a second copy of the weights. A file changed by someone else can cost speed,
never a wrong answer, and one that does not parse is ignored.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import logging
import threading
from collections.abc import Mapping
from pathlib import Path

from llmos.files import atomic_write

log = logging.getLogger(__name__)

FILE_NAME = "prepack-verdicts.json"
MAX_PACKS = 256  # the file stays small: the oldest verdicts go first
RUNTIMES = ("onnxruntime", "onnxruntime-gpu", "torch")  # their kernels decide


def machine_signature(cpuinfo: str, versions: Mapping[str, str]) -> str:
    """What decides the kernels: the first CPU's model and flags, the runtimes' versions."""
    first = cpuinfo.split("\n\n", 1)[0]
    fields = dict(line.split(":", 1) for line in first.splitlines() if ":" in line)
    cpu = {k.strip(): v.strip() for k, v in fields.items()
           if k.strip() in ("vendor_id", "model name", "flags", "Features", "CPU part")}
    text = json.dumps({"cpu": cpu, "runtimes": dict(sorted(versions.items()))},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def this_machine() -> str:
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        cpuinfo = ""
    versions = {}
    for name in RUNTIMES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    return machine_signature(cpuinfo, versions)


def parse(text: str, machine: str) -> list[str]:
    """The packs of ``text`` (the file) that read in place on ``machine``; none for another
    machine or a file that does not parse."""
    try:
        doc = json.loads(text)
    except ValueError:
        return []
    if not isinstance(doc, dict) or doc.get("machine") != machine:
        return []
    packs = doc.get("read_in_place")
    if not isinstance(packs, list):
        return []
    return [p for p in packs if isinstance(p, str)][-MAX_PACKS:]


class PrepackMemo:
    """The verdicts in ``<state_dir>/prepack-verdicts.json``; thread-safe (models load in
    worker threads side by side)."""

    @classmethod
    def in_state_dir(cls, state_dir: Path) -> PrepackMemo:
        return cls(state_dir / FILE_NAME)

    def __init__(self, path: Path, machine: str | None = None) -> None:
        self.path = path
        self._machine = machine
        self._packs: list[str] | None = None
        self._lock = threading.Lock()

    def _load(self) -> list[str]:
        if self._packs is None:
            if self._machine is None:
                self._machine = this_machine()
            try:
                text = self.path.read_text(errors="replace")
            except OSError:
                text = ""
            self._packs = parse(text, self._machine)
        return self._packs

    def reads_in_place(self, sha256: str) -> bool:
        """Whether this machine's kernels read pack ``sha256``'s weights in place (learnt
        at an earlier start)."""
        with self._lock:
            return sha256 in self._load()

    def remember(self, sha256: str) -> None:
        """Keep the verdict for the next start; a state directory that cannot be written
        costs the next start time, nothing else."""
        with self._lock:
            packs = self._load()
            if sha256 in packs:
                return
            packs.append(sha256)
            del packs[:-MAX_PACKS]
            doc = {"machine": self._machine, "read_in_place": packs}
            try:
                atomic_write(self.path, [json.dumps(doc, indent=1).encode()])
            except OSError as exc:
                log.warning("cannot keep the prepacking verdict in %s: %s", self.path,
                            exc.strerror)
