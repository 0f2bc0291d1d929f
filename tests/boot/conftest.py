"""Boot tests: the built appliance image in QEMU with swtpm (marked ``boot``).

They never build the image: ``make test`` builds it first (``make image``); run alone
without one, they fail at once saying so. Each VM lives under build/test-boot/ (a qcow2
overlay on the pristine image, its own OVMF variables and swtpm state; wiped at the start
of a session, kept afterwards for the console logs).

Boots are the suite's expensive part (minutes each under TCG), so one enrollment boot
serves them all: ``first_boot`` boots a fresh VM with the provisioning credential, reads
everything the tests check while it is up (``FirstBoot``), and keeps a snapshot of the
enrolled machine (disk overlay, TPM state, firmware variables) that the attack tests clone.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "image"))  # llmos_vm, stage_packs, requirements

IMAGE = ROOT / "build" / "image" / "llmos.raw"
FLEET_KEY = ROOT / "build" / "keys" / "fleet.key"
DEMO = ROOT / "build" / "demo"
# LLMOS_TEST_LAB: another directory, so that two sessions (e.g. the attack tests beside the
# others) can run at once without wiping each other's VMs.
LAB = Path(os.environ.get("LLMOS_TEST_LAB") or ROOT / "build" / "test-boot")

from llmos_vm import credentials, disk, http, ovmf  # noqa: E402 (needs the path above)
from llmos_vm.machine import Boot, VmDir  # noqa: E402
from llmos_vm.qemu import Forward  # noqa: E402

from . import guest  # noqa: E402

EMBEDDING_MODEL = "minilm"
CHAT_MODEL = "smollm2"
TEXTS = ["A man is playing a guitar on the stage.",
         "Sealed model packs are decrypted in memory and never written to disk in plaintext.",
         "ok"]
ADMIN_PASSWORD = "boot-test-admin-password"
# VM "a"'s disk is this much bigger than the image, as a machine's disk is bigger than the
# image flashed onto it: its first boot grows the data partition (/var) into the rest.
DISK_GROWTH = 1 << 30


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def image() -> Path:
    if not IMAGE.is_file():
        pytest.fail(f"no appliance image at {IMAGE.relative_to(ROOT)}: the boot tests do not "
                    "build it; run 'make image' (make test does it first)", pytrace=False)
    return IMAGE


@pytest.fixture(scope="session")
def fleet_key() -> Path:
    if not FLEET_KEY.is_file():
        pytest.fail(f"no fleet key at {FLEET_KEY.relative_to(ROOT)}: run 'make demo-packs' "
                    "(the image's packs are sealed for it)", pytrace=False)
    return FLEET_KEY


@pytest.fixture(scope="session")
def lab() -> Path:
    shutil.rmtree(LAB, ignore_errors=True)
    LAB.mkdir(parents=True)
    return LAB


class Vm:
    """A test VM: its directory and the ports its boots forward (API, admin)."""

    def __init__(self, root: Path, base: Path, disk_bytes: int | None = None) -> None:
        self.dir = VmDir(root)
        self.dir.prepare(base, ovmf.find(), disk_bytes)
        self.api_port, self.admin_port = free_port(), free_port()

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def admin(self) -> str:
        """The admin page: HTTPS only (its certificate pinned from the console)."""
        return f"https://127.0.0.1:{self.admin_port}"

    def boot(self, label: str, *smbios: str,
             fw_cfg: tuple[tuple[str, Path], ...] = (), **options: bool) -> Boot:
        """One boot; ``options``: Boot's (keyboard, reboot)."""
        return Boot(self.dir, label=label, smbios=smbios, fw_cfg=fw_cfg,
                    forwards=[Forward(self.api_port, 8000), Forward(self.admin_port, 8001)],
                    **options)


@dataclass(frozen=True)
class FirstBoot:
    """The enrollment boot of VM "a", as seen while it was up (the tests assert on it)."""

    vm: Vm
    enrolled: VmDir  # a snapshot of the machine right after this boot, for the clones
    health: dict[str, Any]
    console: str
    report: dict[str, str]
    cpus: int
    embeddings: np.ndarray | AssertionError  # see ``result``; v2 JSON
    triton_embeddings: np.ndarray | AssertionError  # stock tritonclient (binary tensors)
    openai_embeddings: np.ndarray | AssertionError  # stock openai client
    metrics: guest.Samples | AssertionError
    chat: dict[str, Any] | AssertionError
    admin_login_status: int | None  # GET /login over HTTPS, pinned to admin_fingerprint
    admin_fingerprint: str  # the admin page's certificate, as printed on the console
    admin_plain_http: http.Reply | None  # plain HTTP to the admin port (None: no answer)
    clean_shutdown: bool | None
    settled_s: float  # QEMU start to a settled /health


T = TypeVar("T")


def outcome(request: Callable[[], T]) -> T | AssertionError:
    """What ``request`` returned, or the AssertionError it failed with."""
    try:
        return request()
    except AssertionError as exc:
        return exc


def result(value: T | AssertionError) -> T:
    """The value of a request kept by ``outcome``; fails the test if the request failed."""
    if isinstance(value, AssertionError):
        raise value
    return value


def _copy_tpm_and_vars(vm: VmDir, dest: VmDir) -> None:
    """``vm``'s TPM state (not its running swtpm's socket, pid or log) and firmware
    variables into ``dest``, a new directory."""
    dest.root.mkdir(parents=True)
    shutil.copyfile(vm.ovmf_vars, dest.ovmf_vars)
    shutil.copytree(vm.tpm.directory, dest.tpm.directory,
                    ignore=shutil.ignore_patterns("*.sock", "*.pid", "*.log"))


def _snapshot(vm: VmDir, dest: VmDir) -> VmDir:
    """A copy of ``vm`` as it is now (powered off): later boots of ``vm`` do not change it.
    The disk overlay is copied (it names the built image as its base, not ``vm``)."""
    _copy_tpm_and_vars(vm, dest)
    shutil.copyfile(vm.disk, dest.disk)
    return dest


def clone(root: Path, enrolled: VmDir) -> Vm:
    """A clone of the enrolled machine: its TPM and firmware variables copied, its disk
    under a new overlay."""
    _copy_tpm_and_vars(enrolled, VmDir(root))
    return Vm(root, enrolled.disk)


@pytest.fixture(scope="session")
def first_boot(lab: Path, image: Path, fleet_key: Path) -> FirstBoot:
    """VM "a" booted once with the provisioning credentials (fleet key, admin password):
    it seals the key to its TPM and serves; every request the tests judge is made here."""
    vm = Vm(lab / "a", image, disk_bytes=disk.virtual_size(image) + DISK_GROWTH)
    smbios = (credentials.credential("llmos-provision-key", fleet_key.read_bytes()),
              credentials.credential("llmos-admin-password", ADMIN_PASSWORD.encode()))
    with vm.boot("1-first", *smbios) as boot:
        health = guest.settled_health(boot, vm.api)
        settled_s = boot.elapsed()
        assert health["status"] == "ready", ("the enrollment boot does not serve",
                                             health["reasons"])
        report = guest.boot_report(boot)
        # A request that fails is kept as its failure and judged by test_appliance, so
        # that the attack tests, which need only the enrolled machine, still run.
        embeddings = outcome(lambda: guest.embeddings(vm.api, EMBEDDING_MODEL, TEXTS))
        by_triton = outcome(lambda: guest.triton_embeddings(vm.api, EMBEDDING_MODEL, TEXTS))
        by_openai = outcome(lambda: guest.openai_embeddings(vm.api, EMBEDDING_MODEL, TEXTS))
        metrics = outcome(lambda: guest.metrics(vm.api))
        chat = outcome(lambda: guest.answered_chat(vm.api, CHAT_MODEL,
                                                 "What is the capital of France?", max_tokens=8))
        fingerprint = guest.admin_fingerprint(boot)
        login = http.request(f"{vm.admin}/login", pin=fingerprint)
        plain = http.request(f"http://127.0.0.1:{vm.admin_port}/login")
        console = boot.console()
    return FirstBoot(vm, _snapshot(vm.dir, VmDir(lab / "enrolled")), health, console, report,
                     boot.config.cpus, embeddings, by_triton, by_openai, metrics, chat,
                     None if login is None else login.status, fingerprint, plain,
                     boot.clean_shutdown, settled_s)
