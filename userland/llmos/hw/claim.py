"""Claiming accelerators: every side effect on a device lives here.

To claim an accelerator is to make its device nodes owned by the service's user and
group with a fixed mode (recording what they were, so ``release`` restores it) and, for
NVIDIA GPUs, to turn persistence mode on (``nvidia-smi -pm 1``) so the driver keeps the
GPU initialised between loads (first: nvidia-smi, like any NVIDIA client, may make the
device files over). The nvidia driver resets its files to its own ``DeviceFile*``
parameters whenever a client opens them: a claim that differs says so (``Claim.note``), and
the nvidia image sets those parameters to the claim's. ``root`` re-roots every node path
(a fake /dev in tests); ``dry_run`` records what would be done and changes nothing.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from llmos.hw.gpu import NvidiaSmi, device_file_drift, read_driver_params
from llmos.hw.model import Accelerator, DeviceNode, under

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NodeClaim:
    path: Path  # as the inventory names it (before re-rooting)
    uid_before: int
    gid_before: int
    mode_before: int
    uid: int
    gid: int
    mode: int


@dataclass(frozen=True)
class Claim:
    address: str  # PCI address, or "shared" for the nodes all NVIDIA GPUs share
    nodes: tuple[NodeClaim, ...]
    persistence: str  # what happened to persistence mode ("" when not applicable)
    dry_run: bool
    note: str = ""  # why the claim may not hold (the driver resets its device files)


class Claimer:
    def __init__(
        self,
        uid: int | None = None,
        gid: int | None = None,
        *,
        mode: int = 0o660,
        root: Path = Path("/"),
        dry_run: bool = False,
        smi: NvidiaSmi | None = None,
    ) -> None:
        self.uid = os.getuid() if uid is None else uid
        self.gid = os.getgid() if gid is None else gid
        self.mode = mode
        self.root = root
        self.dry_run = dry_run
        self._smi = smi or NvidiaSmi()

    def _claim_node(self, node: DeviceNode) -> NodeClaim | None:
        real = under(self.root, node.path)
        try:
            st = real.stat()
        except FileNotFoundError:
            log.warning("device node %s is gone; not claimed", node.path)
            return None
        claim = NodeClaim(node.path, st.st_uid, st.st_gid, st.st_mode & 0o7777,
                          self.uid, self.gid, self.mode)
        if not self.dry_run:
            os.chown(real, self.uid, self.gid)
            os.chmod(real, self.mode)
        return claim

    def _claim_nodes(self, nodes: Iterable[DeviceNode]) -> tuple[NodeClaim, ...]:
        return tuple(c for n in nodes if (c := self._claim_node(n)) is not None)

    def claim(self, accelerator: Accelerator, previous: Claim | None = None) -> Claim:
        """Own the accelerator's nodes; persistence mode on for a CUDA GPU.

        With ``previous`` (the same device, re-scanned), nodes already claimed keep their
        record (the owner before us) and only new nodes are touched.
        """
        persistence = previous.persistence if previous else ""
        if accelerator.cuda_index is not None and previous is None:
            if self.dry_run:
                persistence = "dry run: nvidia-smi -pm 1 not run"
            elif self._smi.path is None:
                persistence = "persistence mode not set: nvidia-smi is not installed"
            else:
                _, persistence = self._smi.enable_persistence(accelerator.address)
        kept = {n.path: n for n in previous.nodes} if previous else {}
        fresh = self._claim_nodes(n for n in accelerator.nodes if n.path not in kept)
        nodes = tuple(kept[n.path] for n in accelerator.nodes if n.path in kept) + fresh
        note = ""
        if accelerator.vendor == "nvidia":
            note = device_file_drift(read_driver_params(under(self.root, Path("/proc"))),
                                     self.uid, self.gid, self.mode)
        if fresh or previous is None:
            log.info("claimed %s (%s): %d node(s)%s", accelerator.address, accelerator.model,
                     len(fresh), f"; {persistence}" if persistence else "")
            if note:
                log.warning("claim of %s may not hold: %s", accelerator.address, note)
        return Claim(accelerator.address, nodes, persistence, self.dry_run, note)

    def claim_shared(self, nodes: Iterable[DeviceNode]) -> Claim:
        """Own the nodes every NVIDIA GPU needs (/dev/nvidiactl, /dev/nvidia-uvm...)."""
        return Claim("shared", self._claim_nodes(nodes), "", self.dry_run)

    def release(self, claim: Claim) -> None:
        """Give the nodes back their recorded owner and mode (those still present)."""
        if claim.dry_run:
            return
        for node in claim.nodes:
            real = under(self.root, node.path)
            try:
                os.chown(real, node.uid_before, node.gid_before)
                os.chmod(real, node.mode_before)
            except FileNotFoundError:
                continue  # the device went away with its node
        log.info("released %s", claim.address)
