"""Claiming device nodes in a fake root: ownership, mode, persistence mode, release."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from llmos.hw.claim import Claimer
from llmos.hw.gpu import NvidiaSmi
from llmos.hw.model import Accelerator, DeviceNode, NodeKind

# Only root can give a node to another user; otherwise the test claims for itself.
UID, GID = (65534, 65534) if os.geteuid() == 0 else (os.getuid(), os.getgid())


def _gpu(*names: str, cuda: int | None = 0) -> Accelerator:
    nodes = tuple(DeviceNode(Path("/dev") / n, NodeKind.NVIDIA) for n in names)
    return Accelerator("0000:01:00.0", "nvidia", 0x10DE, 0x2330, 0x030200, "H100", "nvidia", 0,
                       nodes, cuda_index=cuda)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    for name in ("nvidia0", "dri/card0", "dri/renderD128"):
        node = tmp_path / "dev" / name
        node.parent.mkdir(parents=True, exist_ok=True)
        node.write_bytes(b"")
        node.chmod(0o666)
    return tmp_path


def _owner(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)


def _smi(tmp_path: Path) -> tuple[NvidiaSmi, Path]:
    log = tmp_path / "smi-args"
    tool = tmp_path / "nvidia-smi"
    tool.write_text(f'#!/bin/sh\necho "$@" >> {log}\necho "Enabled persistence mode"\n')
    tool.chmod(0o755)
    return NvidiaSmi(str(tool)), log


def test_claim_owns_the_nodes_and_release_gives_them_back(root: Path, tmp_path: Path) -> None:
    smi, log = _smi(tmp_path)
    before = _owner(root / "dev/nvidia0")
    claimer = Claimer(UID, GID, mode=0o660, root=root, smi=smi)
    claim = claimer.claim(_gpu("nvidia0", "dri/card0", "nvidia9"))  # nvidia9 does not exist

    assert [n.path for n in claim.nodes] == [Path("/dev/nvidia0"), Path("/dev/dri/card0")]
    assert _owner(root / "dev/nvidia0") == (UID, GID, 0o660)
    assert _owner(root / "dev/dri/card0") == (UID, GID, 0o660)
    assert _owner(root / "dev/dri/renderD128")[2] == 0o666  # not this accelerator's
    assert (claim.nodes[0].uid_before, claim.nodes[0].gid_before,
            claim.nodes[0].mode_before) == before
    assert claim.persistence == "persistence mode enabled"
    assert log.read_text().split() == ["-i", "0000:01:00.0", "-pm", "1"]

    claimer.release(claim)
    assert _owner(root / "dev/nvidia0") == before
    assert _owner(root / "dev/dri/card0") == before


def test_dry_run_changes_nothing(root: Path, tmp_path: Path) -> None:
    smi, log = _smi(tmp_path)
    before = _owner(root / "dev/nvidia0")
    claim = Claimer(UID, GID, mode=0o600, root=root, dry_run=True, smi=smi).claim(_gpu("nvidia0"))
    assert claim.dry_run and claim.nodes[0].mode == 0o600
    assert _owner(root / "dev/nvidia0") == before
    assert not log.exists() and claim.persistence.startswith("dry run")


def test_reclaim_touches_only_new_nodes_and_keeps_the_first_owner(root: Path) -> None:
    claimer = Claimer(UID, GID, mode=0o660, root=root, smi=NvidiaSmi("no-such-nvidia-smi"))
    first = claimer.claim(_gpu("nvidia0"))
    assert "not installed" in first.persistence
    again = claimer.claim(_gpu("nvidia0", "dri/card0"), first)
    assert again.nodes[0] == first.nodes[0]  # the owner before us is still recorded
    assert again.persistence == first.persistence
    claimer.release(again)
    assert _owner(root / "dev/nvidia0")[2] == 0o666
    assert _owner(root / "dev/dri/card0")[2] == 0o666


def test_non_cuda_accelerators_get_no_persistence_mode(root: Path) -> None:
    claim = Claimer(UID, GID, root=root).claim(_gpu("dri/card0", cuda=None))
    assert claim.persistence == "" and len(claim.nodes) == 1


def test_shared_nodes_are_one_claim(root: Path) -> None:
    nodes = (DeviceNode(Path("/dev/nvidia0"), NodeKind.NVIDIA_CONTROL),)
    claim = Claimer(UID, GID, root=root).claim_shared(nodes)
    assert claim.address == "shared" and _owner(root / "dev/nvidia0")[:2] == (UID, GID)


def _params(root: Path, modify: int, uid: int, gid: int, mode: int) -> None:
    params = root / "proc/driver/nvidia/params"
    params.parent.mkdir(parents=True, exist_ok=True)
    params.write_text(f"ResmanDebugLevel: 4294967295\nModifyDeviceFiles: {modify}\n"
                      f"DeviceFileUID: {uid}\nDeviceFileGID: {gid}\nDeviceFileMode: {mode}\n")


def test_nvidia_smi_runs_before_the_nodes_are_claimed(root: Path, tmp_path: Path) -> None:
    """Like the real driver's clients, this nvidia-smi makes the device file over (0666)
    when it runs: the claim must come after it."""
    tool = tmp_path / "nvidia-smi"
    tool.write_text(f'#!/bin/sh\nchmod 666 {root}/dev/nvidia0\necho "Enabled persistence"\n')
    tool.chmod(0o755)
    Claimer(UID, GID, mode=0o660, root=root, smi=NvidiaSmi(str(tool))).claim(_gpu("nvidia0"))
    assert _owner(root / "dev/nvidia0") == (UID, GID, 0o660)


@pytest.mark.parametrize("modify, params_mode, says", [
    (1, 0o666, "resets its device files to uid 0, gid 0, mode 666"),
    (1, 0o660, ""),  # the driver's parameters are the claim's (the nvidia image sets them)
    (0, 0o666, ""),  # the driver leaves its files alone
])
def test_a_claim_says_when_the_driver_will_undo_it(
        root: Path, tmp_path: Path, modify: int, params_mode: int, says: str) -> None:
    owner = (0, 0) if says else (UID, GID)
    _params(root, modify, *owner, params_mode)
    smi, _ = _smi(tmp_path)
    claim = Claimer(UID, GID, mode=0o660, root=root, smi=smi).claim(_gpu("nvidia0"))
    assert (says in claim.note) if says else claim.note == ""
    if says:
        assert f"NVreg_DeviceFileUID={UID} NVreg_DeviceFileGID={GID} " \
               "NVreg_DeviceFileMode=0660" in claim.note
