"""The appliance, booted: first boot, second boot, another TPM, and what stays on the disk.

One VM ("a") boots twice: first with the fleet key as provisioning credential (it seals the
key to its TPM), then without it (the TPM alone releases the key). The same disk then boots
in a second machine ("c": a fresh TPM), which must serve nothing and say why without
crash-looping. Last, every disk image involved is searched for the models' plaintext.
Each boot runs all of its checks while it is up; the tests run in this order.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from llmos_vm import credentials, http, ovmf
from llmos_vm.disk import find_all
from llmos_vm.machine import Boot, VmDir
from llmos_vm.qemu import Forward
from stage_packs import read_list

from . import guest, reference
from .conftest import DEMO, ROOT, free_port

pytestmark = [pytest.mark.boot, pytest.mark.timeout(45 * 60)]

EMBEDDING_MODEL = "minilm"
CHAT_MODEL = "smollm2"
TEXTS = ["A man is playing a guitar on the stage.",
         "Sealed model packs are decrypted in memory and never written to disk in plaintext.",
         "ok"]
ADMIN_PASSWORD = "boot-test-admin-password"
# Same pack, same onnxruntime version; the guest's emulated CPU may pick other kernels.
MIN_COSINE = 0.9999
MAX_ABS_DIFF = 2e-3


class Vm:
    """A VM of this module: its directory and the ports its boots forward."""

    def __init__(self, root: Path, base: Path) -> None:
        self.dir = VmDir(root)
        self.dir.prepare(base, ovmf.find())
        self.api_port, self.admin_port = free_port(), free_port()

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def boot(self, label: str, *smbios: str) -> Boot:
        return Boot(self.dir, label=label, smbios=smbios,
                    forwards=[Forward(self.api_port, 8000), Forward(self.admin_port, 8001)])


@pytest.fixture(scope="module")
def vm_a(lab: Path, image: Path) -> Vm:
    return Vm(lab / "a", image)


@pytest.fixture(scope="module")
def reference_embeddings(fleet_key: Path) -> np.ndarray:
    return reference.embed(DEMO / f"{EMBEDDING_MODEL}.sealed", fleet_key, TEXTS)


def _assert_embeddings_match(api: str, expected: np.ndarray) -> None:
    served = guest.embeddings(api, EMBEDDING_MODEL, TEXTS)
    assert served.shape == expected.shape
    assert np.all(reference.cosine(served, expected) > MIN_COSINE), \
        reference.cosine(served, expected)
    assert float(np.abs(served - expected).max()) < MAX_ABS_DIFF


def _assert_serving(health: dict[str, object]) -> None:
    assert health["status"] == "ready", health["reasons"]
    key = health["key"]
    assert isinstance(key, dict) and key["released"] is True and key["provider"] == "tpm2", key


def test_first_boot_seals_the_key_and_serves(vm_a: Vm, fleet_key: Path,
                                             reference_embeddings: np.ndarray) -> None:
    smbios = (credentials.credential("llmos-provision-key", fleet_key.read_bytes()),
              credentials.credential("llmos-admin-password", ADMIN_PASSWORD.encode()))
    with vm_a.boot("1-first", *smbios) as boot:
        health = guest.settled_health(boot, vm_a.api)
        _assert_serving(health)
        assert "fleet key" in boot.console() and "enrolled in /var/lib/llmos/fleet-key.tpm2" \
            in boot.console(), "no enrollment message on the console"
        assert guest.boot_report(boot)["supervisor"] == "active"
        assert "login:" not in boot.console(), "a login prompt on the console"
        _assert_embeddings_match(vm_a.api, reference_embeddings)

        # --- the LLM (smollm2 pack, OpenAI API): one greedy chat completion answers ------
        answer = guest.chat(vm_a.api, CHAT_MODEL, "What is the capital of France?",
                            max_tokens=8)
        text = answer["choices"][0]["message"]["content"]
        assert isinstance(text, str) and text.strip(), answer
        assert 0 < answer["usage"]["completion_tokens"] <= 8, answer["usage"]

        login = http.request(f"http://127.0.0.1:{vm_a.admin_port}/login")
        assert login is not None and login.status == 200, "admin page not reachable"
    assert boot.clean_shutdown, "the guest did not power off on the ACPI request"


def test_second_boot_releases_the_key_from_the_tpm_alone(
        vm_a: Vm, reference_embeddings: np.ndarray) -> None:
    with vm_a.boot("2-second") as boot:  # no credential at all
        health = guest.settled_health(boot, vm_a.api)
        _assert_serving(health)
        assert "sealing the fleet key" not in boot.console(), "enrollment ran again"
        _assert_embeddings_match(vm_a.api, reference_embeddings)
    assert boot.clean_shutdown, "the guest did not power off on the ACPI request"


def test_same_disk_with_another_tpm_serves_nothing_and_does_not_crash_loop(
        vm_a: Vm, lab: Path) -> None:
    vm_c = Vm(lab / "c", vm_a.dir.disk)  # vm_a's disk (copy-on-write), a brand-new TPM
    with vm_c.boot("3-other-tpm") as boot:
        health = guest.settled_health(boot, vm_c.api)
        assert health["status"] == "unavailable" and health["ready"] is False, health
        key = health["key"]
        assert isinstance(key, dict) and key["released"] is False and key["reason"], key
        assert any("fleet key unavailable" in r for r in health["reasons"]), health["reasons"]
        assert guest.boot_report(boot)["supervisor"] == "active"
        ready = http.request(f"{vm_c.api}/v2/health/ready")
        assert ready is not None and ready.status != 200

        # The same process keeps answering: the models' 'since' stamps (set once, when
        # the key failed) do not move, as they would if systemd restarted the supervisor.
        first = {name: m["since"] for name, m in health["models"].items()}
        for _ in range(6):
            time.sleep(5)
            again = guest.settled_health(boot, vm_c.api)
            assert again["status"] == "unavailable"
            assert {name: m["since"] for name, m in again["models"].items()} == first
    assert boot.clean_shutdown, "the guest did not power off on the ACPI request"


def test_no_plaintext_model_bytes_on_any_disk(vm_a: Vm, lab: Path, image: Path,
                                             fleet_key: Path) -> None:
    names = read_list(ROOT / "image" / "packs.list")
    fragments = [f for name in names
                 for f in reference.plaintext_fragments(DEMO / f"{name}.sealed", fleet_key)]
    assert len(fragments) >= 4 * len(names), "too few distinctive plaintext fragments"
    disks = [image, vm_a.dir.disk, lab / "c" / "disk.qcow2"]
    assert all(d.is_file() for d in disks), "the boot tests above did not all run"
    for disk in disks:
        hits = list(find_all(disk, fragments))
        assert not hits, f"{disk}: plaintext model bytes at offsets {[o for _, o in hits][:5]}"
