"""The appliance, booted: first boot, second boot, another TPM, and what stays on the disk.

One VM ("a") boots twice: first with the fleet key as provisioning credential (it seals the
key to its TPM; the session's ``first_boot``, whose snapshot the attack tests clone too),
then without it (the TPM alone releases the key), with hostile credentials from the
hypervisor that must add no code (attack a of test_attacks.py, on this boot to spare one).
The same disk then boots in a second machine ("c": a fresh TPM), which must serve nothing
and say why without crash-looping. A third machine ("e") is provisioned as hardware is: the
key file on the ESP of the flashed disk, deleted once sealed. Last, every disk image
involved is searched for the models' plaintext.
Each boot runs all of its checks while it is up; the tests run in this order.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from llmos_vm import accel, esp, http, report
from llmos_vm.disk import DATA, find_all, partition
from stage_packs import read_list

from llmos.vault.sealed import SealedPack

from . import attacks, guest, reference
from .conftest import (
    CHAT_MODEL,
    DEMO,
    DISK_GROWTH,
    EMBEDDING_MODEL,
    ROOT,
    TEXTS,
    FirstBoot,
    Vm,
    outcome,
    result,
)

pytestmark = [pytest.mark.boot, pytest.mark.timeout(45 * 60)]

# Same pack, same onnxruntime version, same CPU model (reference.embed_as_guest).
MIN_COSINE = 0.9999
MAX_ABS_DIFF = 2e-3
#: What the loader says when a pack's prepacked weights are still read (llmos.serving.loading)
RELOADED = "loading it again with prepack = false"
LEARNT = "learnt at an earlier start"
#: The LLM's warning when its config turns prepacking off (llmos.llm.model), which the
#: demo config does not: the loader's own choice is not the operator's
PREPACK_OFF = "weight prepacking is off for this model"


@pytest.fixture(scope="module")
def guest_reference(fleet_key: Path) -> tuple[np.ndarray, bool]:
    """The embeddings the guest's CPU model computes, and whether its kernels prepack."""
    return reference.embed_as_guest(DEMO / f"{EMBEDDING_MODEL}.sealed", fleet_key, TEXTS,
                                    accel.choose())


@pytest.fixture(scope="module")
def reference_embeddings(guest_reference: tuple[np.ndarray, bool]) -> np.ndarray:
    return guest_reference[0]


@pytest.fixture(scope="module")
def guest_prepacks(guest_reference: tuple[np.ndarray, bool]) -> bool:
    return guest_reference[1]


def _assert_embeddings_match(served: np.ndarray, expected: np.ndarray) -> None:
    assert served.shape == expected.shape
    assert np.all(reference.cosine(served, expected) > MIN_COSINE), \
        reference.cosine(served, expected)
    assert float(np.abs(served - expected).max()) < MAX_ABS_DIFF


def _assert_serving(health: dict[str, object]) -> None:
    assert health["status"] == "ready", health["reasons"]
    key = health["key"]
    assert isinstance(key, dict) and key["released"] is True and key["provider"] == "tpm2", key


def _plain_sizes() -> dict[str, int]:
    """Plaintext weight bytes of every pack the image serves, by model name."""
    manifests = [SealedPack.open(DEMO / f"{stem}.sealed").manifest
                 for stem in read_list(ROOT / "image" / "packs.list")]
    return {m.name: m.size_plain for m in manifests}


def _assert_weights_pinned_on_hugepages(m: guest.Samples, prepacks: bool) -> None:
    """The kernel command line reserved a pool; the decrypted weights fill it, nothing else.

    Each pack is decrypted into one hugepage mapping, within a page of its plaintext size.
    The LLM then gives back the pages of the matrices onnxruntime keeps prepacked (it never
    reads them again): they return to HugePages_Free. Where the guest's CPU model has
    kernels that do not prepack (``prepacks`` false: reference.embed), it keeps them.
    Hugetlb pages cannot be swapped, and
    the kernel does not count them as locked. Every other page of the supervisor is locked
    (``memory.lock_process``): the runtime's own copies too.
    """
    plain = _plain_sizes()
    page = 2 * 1024 * 1024
    total, free = m[("llmos_hugepages_total", ())], m[("llmos_hugepages_free", ())]
    assert total >= sum(-(-n // page) for n in plain.values()), "hugepages not reserved"
    on_hugepages = 0.0
    for name, size in plain.items():
        label = (("model", name),)
        held = m[("llmos_model_memory_bytes", label)]
        released = m[("llmos_model_released_bytes", label)]
        assert size <= held + released < size + page, \
            f"{name}: {held} + {released} bytes mapped for {size} of weights"
        assert m[("llmos_model_hugepage_bytes", label)] == held, \
            f"{name}: weights not on hugepages ({m[('llmos_model_locked_bytes', label)]} " \
            "bytes on mlock'ed normal pages instead)"
        on_hugepages += held
    released_by_llm = m[("llmos_model_released_bytes", (("model", CHAT_MODEL),))]
    if prepacks:
        assert released_by_llm > plain[CHAT_MODEL] / 2, \
            "the LLM kept the plaintext of the matrices onnxruntime holds prepacked"
    else:
        assert released_by_llm == 0, "the LLM gave back weights its kernels read in place"
    # HugePages_Free dropped by exactly the weights held (page-rounded): no other user.
    assert (total - free) * page == on_hugepages, (total, free, on_hugepages)
    # The supervisor is locked as a whole (memory.lock_process): what onnxruntime made of
    # the weights for itself (the LLM's prepacked matrices) is pinned too. Locked counts
    # shared pages in proportion (PSS), resident counts them whole: a margin for libraries.
    locked, resident = m[("llmos_process_locked_bytes", ())], \
        m[("llmos_process_resident_bytes", ())]
    assert locked >= 0.9 * resident, f"{locked} of {resident} resident bytes locked"


def _assert_cpu_time_adds_up(report: dict[str, str], cpus: int) -> None:
    """The report's busy and idle time (bench.boot_time's work figures) cover the guest's
    CPUs since boot: all of it but the kernel's first moments, before the second CPU is up."""
    uptime, busy, idle = (float(report[k]) for k in ("uptime", "cpu_busy", "cpu_idle"))
    assert busy > 0 and idle >= 0, report
    assert 0.8 * cpus * uptime <= busy + idle <= 1.01 * cpus * uptime, (cpus, report)


def _assert_data_partition_grown(report: dict[str, str], image: Path) -> None:
    """/var fills the disk: the data partition as built plus the disk's growth (less what
    ext4 keeps for itself), not the 512 MiB of the image."""
    built = partition(image, DATA)[1]
    var_bytes = int(report["var_bytes"])
    assert built + 0.9 * DISK_GROWTH < var_bytes <= built + DISK_GROWTH, (built, var_bytes)


def test_first_boot_seals_the_key_and_serves(first_boot: FirstBoot, image: Path,
                                             reference_embeddings: np.ndarray,
                                             guest_prepacks: bool) -> None:
    _assert_serving(first_boot.health)
    key = first_boot.health["key"]
    # The protected configuration, said by the appliance itself (docs/security.md).
    assert key["secure_boot"] is True and key["policy_signed"] is True, key
    assert key["protected"] is True, key
    assert key["pcrs"] == "7+12+13" and key["signed_pcrs"] == "11", key
    console = first_boot.console
    assert "fleet key" in console and "enrolled in /var/lib/llmos/fleet-key.tpm2" in console, \
        "no enrollment message on the console"
    assert first_boot.report["supervisor"] == "active"
    _assert_data_partition_grown(first_boot.report, image)
    assert "login:" not in console, "a login prompt on the console"
    # The admin page speaks HTTPS only, with the self-signed certificate whose fingerprint
    # the console shows (the pinned request in first_boot refused any other certificate).
    assert report.certificates(console) == [("self-signed", first_boot.admin_fingerprint)]
    assert first_boot.admin_login_status == 200, "admin page not reachable over HTTPS"
    plain = first_boot.admin_plain_http
    assert plain is None or plain.status >= 400, "the admin page answered plain HTTP"
    _assert_embeddings_match(result(first_boot.embeddings), reference_embeddings)
    # The stock clients get the same numbers: tritonclient (binary tensors) exactly, the
    # openai client's /v1/embeddings to float32 rounding of its wire format.
    np.testing.assert_array_equal(result(first_boot.triton_embeddings),
                                  result(first_boot.embeddings))
    np.testing.assert_allclose(result(first_boot.openai_embeddings),
                               result(first_boot.embeddings), rtol=0, atol=1e-6)
    _assert_weights_pinned_on_hugepages(result(first_boot.metrics), guest_prepacks)
    # The requests kept the cores awake (server.cpu_awake_s): the sandboxed service may
    # open the kernel's CPU latency request (DeviceAllow=); where it may not, it says so.
    assert "cores are let sleep between requests" not in console
    assert ("llmos_cpu_awake", ()) in result(first_boot.metrics)
    assert console.count(RELOADED) == (0 if guest_prepacks else 2)  # learnt here
    assert PREPACK_OFF not in console

    # --- the LLM (smollm2 pack, stock openai client): one greedy chat completion answered -
    answer = result(first_boot.chat)
    text = answer["choices"][0]["message"]["content"]
    assert isinstance(text, str) and "Paris" in text, answer
    assert 0 < answer["usage"]["completion_tokens"] <= 8, answer["usage"]

    assert first_boot.clean_shutdown, "the guest did not power off on the ACPI request"
    # Last: on an oversubscribed host the guest loses timer ticks and this undercounts;
    # what the boot showed above is judged either way.
    _assert_cpu_time_adds_up(first_boot.report, first_boot.cpus)


def test_second_boot_releases_the_key_from_the_tpm_alone_and_takes_no_injected_code(
        first_boot: FirstBoot, lab: Path, fleet_key: Path, image: Path,
        reference_embeddings: np.ndarray, guest_prepacks: bool) -> None:
    """No provisioning credential: the TPM alone releases the key. The hypervisor hands in
    unit drop-ins, an extra unit, tmpfiles and sysctl lines (attack a): none is honoured;
    nor the key file and pack its llmos-settings name (refused, said on the console)."""
    vm = first_boot.vm
    hostile = attacks.hostile_credentials(lab / "a-hostile")
    with vm.boot("2-second", *hostile.smbios, fw_cfg=hostile.fw_cfg) as boot:
        health = guest.settled_health(boot, vm.api)
        _assert_serving(health)
        assert "sealing the fleet key" not in boot.console(), "enrollment ran again"
        for refusal in attacks.REFUSED_SETTINGS:
            assert refusal in boot.console(), refusal
        # the certificate made at the first boot is kept on the data partition
        fingerprint = guest.admin_fingerprint(boot)
        login = http.request(f"{vm.admin}/login", pin=first_boot.admin_fingerprint)
        made_again = "made a self-signed TLS certificate" in boot.console()
        boot_report = guest.boot_report(boot)
        assert boot_report["supervisor"] == "active"
        served = outcome(lambda: guest.embeddings(vm.api, EMBEDDING_MODEL, TEXTS))
        metrics = outcome(lambda: guest.metrics(vm.api))
    assert boot.clean_shutdown, "the guest did not power off on the ACPI request"
    # Where the first boot learnt that this CPU's kernels read both packs' weights in
    # place (and loaded each twice), this boot loads each once (serving.prepack_memo).
    console = boot.console()
    assert (console.count(LEARNT), console.count(RELOADED)) == \
        ((0, 0) if guest_prepacks else (2, 0))
    assert PREPACK_OFF not in console
    attacks.assert_no_key(boot, vm.dir, fleet_key)  # first: attack a, whatever else fails
    assert fingerprint == first_boot.admin_fingerprint and not made_again
    assert login is not None and login.status == 200
    _assert_data_partition_grown(boot_report, image)  # as grown at the first boot
    _assert_embeddings_match(result(served), reference_embeddings)
    _assert_weights_pinned_on_hugepages(result(metrics), guest_prepacks)


def test_same_disk_with_another_tpm_serves_nothing_and_does_not_crash_loop(
        first_boot: FirstBoot, lab: Path) -> None:
    vm_c = Vm(lab / "c", first_boot.vm.dir.disk)  # vm_a's disk (copy-on-write), a brand-new TPM
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


def test_hardware_provisioning_from_a_key_file_on_the_esp(
        lab: Path, image: Path, fleet_key: Path, reference_embeddings: np.ndarray) -> None:
    """As on hardware: the key file copied onto the flashed disk's ESP, no credential."""
    (lab / "e").mkdir()
    flashed = lab / "e" / "flashed.raw"
    subprocess.run(["cp", "--sparse=always", str(image), str(flashed)], check=True)
    esp.put(flashed, "llmos/provision.key", fleet_key.read_bytes())
    vm_e = Vm(lab / "e", flashed)
    with vm_e.boot("5-esp-key") as boot:
        health = guest.settled_health(boot, vm_e.api)
        _assert_serving(health)
        assert "llmos/provision.key to the TPM (the file is deleted)" in boot.console()
        _assert_embeddings_match(guest.embeddings(vm_e.api, EMBEDDING_MODEL, TEXTS),
                                 reference_embeddings)
    assert boot.clean_shutdown, "the guest did not power off on the ACPI request"

    after = lab / "e" / "after.raw"  # the disk as the guest left it
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(vm_e.dir.disk), str(after)],
                   check=True)
    try:
        assert esp.exists(after, "EFI"), "not looking at the ESP"
        assert not esp.exists(after, "llmos/provision.key"), "the key file is still there"
        assert not list(find_all(after, [fleet_key.read_bytes()])), \
            "the key file's bytes are still on the disk"
    finally:
        after.unlink()


def test_no_plaintext_model_bytes_on_any_disk(first_boot: FirstBoot, lab: Path, image: Path,
                                             fleet_key: Path) -> None:
    names = read_list(ROOT / "image" / "packs.list")
    fragments = [f for name in names
                 for f in reference.plaintext_fragments(DEMO / f"{name}.sealed", fleet_key)]
    assert len(fragments) >= 4 * len(names), "too few distinctive plaintext fragments"
    disks = [image, first_boot.vm.dir.disk, lab / "c" / "disk.qcow2", lab / "e" / "disk.qcow2"]
    assert all(d.is_file() for d in disks), "the boot tests above did not all run"
    for disk in disks:
        hits = list(find_all(disk, fragments))
        assert not hits, f"{disk}: plaintext model bytes at offsets {[o for _, o in hits][:5]}"
