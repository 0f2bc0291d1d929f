"""Hostile boots of an enrolled appliance: each gets no key, and the appliance says why.

The session's enrollment boot (``first_boot``: VM "a" of test_appliance.py, booted once
with the provisioning credential) left a snapshot of the enrolled machine. Every attack boots
a clone of it: its disk (copy-on-write), a copy of its TPM state (the same TPM: same seeds,
same sealed key) and of its firmware variables, changed the way that attacker could:

a. the hypervisor hands in unit drop-ins (SMBIOS credentials) and an extra unit (fw_cfg
   credential) that one of them pulls in, each printing the released key, and tmpfiles and
   sysctl lines (credentials too): checked on VM "a"'s second boot (test_appliance.py),
   which must serve from the TPM alone all the same, to spare a boot;
b. the hypervisor appends a kernel command line through SMBIOS
   (``io.systemd.stub.kernel-cmdline-extra``);
c. someone with the powered-off disk writes an ``ExecStartPre=`` into the supervisor's unit
   file in the read-only root (same length, no mount: bytes changed in place);
d. someone with the disk puts an unsigned UKI on the ESP in place of the signed one;
e. someone with the firmware settings switches Secure Boot off (same disk, same TPM);

and, the other way round, f. a later build signed with the same keys on the same data and
TPM gets the key without re-enrollment.

After each boot the console and the VM's disk are searched for the fleet key (hex, raw and
base64). The injected commands print ATTACK_MARKER first: its absence shows they never ran
(``attacks``). One attack per boot: each of b-e makes the release fail by itself, so two in
one boot would each hide whether the other was stopped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from llmos_vm import credentials, disk, esp, ovmf
from llmos_vm.disk import find_all
from llmos_vm.machine import Boot, VmDir
from llmos_vm.qemu import Forward

from . import guest
from .attacks import STEAL, assert_no_key
from .conftest import ROOT, FirstBoot, free_port

pytestmark = [pytest.mark.boot, pytest.mark.timeout(30 * 60)]

UNSIGNED_TIMEOUT_S = 8 * 60.0
RUNTIME_REPART = ROOT / "image" / "mkosi.extra" / "usr" / "lib" / "repart.d"


class Clone:
    """A VM made from the enrolled one: its disk under a new overlay, its TPM and variables."""

    def __init__(self, root: Path, enrolled: VmDir, base: Path | None = None,
                 secure_boot: bool = True) -> None:
        self.firmware = ovmf.find(secure_boot=secure_boot)
        self.dir = VmDir(root)
        root.mkdir(parents=True)
        shutil.copytree(enrolled.tpm.directory, self.dir.tpm.directory,
                        ignore=shutil.ignore_patterns("*.sock", "*.pid", "*.log"))
        if secure_boot:
            shutil.copyfile(enrolled.ovmf_vars, self.dir.ovmf_vars)
        self.dir.prepare(base or enrolled.disk, self.firmware)
        self.api_port = free_port()

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def boot(self, label: str, smbios: tuple[str, ...] = ()) -> Boot:
        return Boot(self.dir, label=label, smbios=smbios, firmware=self.firmware,
                    forwards=[Forward(self.api_port, 8000)])


def _assert_up_without_key(boot: Boot, vm: Clone, why: str) -> dict[str, object]:
    health = guest.settled_health(boot, vm.api)
    assert health["status"] == "unavailable" and health["ready"] is False, health
    key = health["key"]
    assert isinstance(key, dict) and key["released"] is False, key
    assert why in str(key["reason"]) + str(key.get("problems")), key
    return key


@pytest.fixture(scope="module")
def enrolled(first_boot: FirstBoot) -> VmDir:
    """The enrolled appliance as its enrollment boot left it (serving: test_appliance.py)."""
    assert first_boot.health["status"] == "ready", first_boot.health["reasons"]
    return first_boot.enrolled


def test_b_kernel_command_line_from_smbios_releases_nothing(
        enrolled: VmDir, lab: Path, fleet_key: Path) -> None:
    vm = Clone(lab / "attack-b", enrolled)
    extra = credentials.kernel_cmdline_extra("systemd.debug_shell=ttyS0",
                                             "rd.systemd.debug_shell=ttyS0")
    with vm.boot("b-cmdline-extra", smbios=(extra,)) as boot:
        # systemd-stub appends it (and measures it into PCR 12, which the key is bound to).
        key = _assert_up_without_key(boot, vm, "refused")
        # The machine is still configured as protected: it just did not release the key.
        assert key["secure_boot"] is True and key["protected"] is True, key
    assert boot.clean_shutdown
    assert_no_key(boot, vm.dir, fleet_key)


def _raw_copy(source: Path, dest: Path) -> Path:
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(source), str(dest)], check=True)
    return dest


def test_c_a_file_changed_offline_in_the_read_only_root_is_refused(
        enrolled: VmDir, lab: Path, fleet_key: Path) -> None:
    tampered = _raw_copy(enrolled.disk, lab / "attack-c-disk.raw")
    start, size = disk.partition(tampered, disk.ROOT_X86_64)
    line = (b"# The LLM OS supervisor: releases the TPM-sealed fleet key, opens the sealed "
            b"packs in")
    evil = f"ExecStartPre=+{STEAL}".encode()[:len(line) - 1].ljust(len(line) - 1) + b"\n"
    hits = [o for _, o in find_all(tampered, [line]) if start <= o < start + size]
    assert hits, "the supervisor's unit file is not in the root partition"
    with tampered.open("r+b") as f:
        for offset in hits:
            f.seek(offset)
            f.write(evil[:len(line)])
    vm = Clone(lab / "attack-c", enrolled, base=tampered)
    with vm.boot("c-offline-edit") as boot:
        report = guest.boot_report(boot)
        # dm-verity refuses the changed block: the unit cannot be read, nothing runs it.
        console = boot.console()
        assert "verity" in console and "corrupt" in console, boot.console_tail()
        assert report["supervisor"] != "active", report
    assert_no_key(boot, vm.dir, fleet_key)


def test_d_an_unsigned_uki_on_the_esp_does_not_boot(
        enrolled: VmDir, lab: Path, image: Path, fleet_key: Path) -> None:
    (lab / "attack-d").mkdir()
    swapped = _raw_copy(enrolled.disk, lab / "attack-d" / "swapped.raw")
    uki = image.with_suffix(".efi")
    unsigned = lab / "attack-d" / "unsigned.efi"
    shutil.copyfile(uki, unsigned)
    subprocess.run(["sbattach", "--remove", str(unsigned)], check=True, capture_output=True)
    assert subprocess.run(["sbverify", "--list", str(unsigned)], capture_output=True,
                          text=True).stdout.count("signature") == 0
    target = next(p for p in esp.list_dir(swapped, "EFI/Linux") if p.endswith(".efi"))
    esp.put(swapped, f"EFI/Linux/{target}", unsigned.read_bytes())
    vm = Clone(lab / "attack-d" / "vm", enrolled, base=swapped)
    with vm.boot("d-unsigned-uki") as boot:
        # systemd-boot asks the firmware to verify the UKI; it refuses and nothing boots.
        boot.wait_console(r"(?i)(security violation|access denied|failed to (start|load))",
                          timeout_s=UNSIGNED_TIMEOUT_S)
        assert "llmos-boot:" not in boot.console()
        boot.powerdown(timeout_s=5)  # the firmware ignores the power button here: killed
    assert_no_key(boot, vm.dir, fleet_key)


def test_e_secure_boot_off_same_disk_same_tpm_releases_nothing(
        enrolled: VmDir, lab: Path, fleet_key: Path) -> None:
    vm = Clone(lab / "attack-e", enrolled, secure_boot=False)
    with vm.boot("e-secure-boot-off") as boot:
        key = _assert_up_without_key(boot, vm, "Secure Boot is off")
        assert key["secure_boot"] is False and key["protected"] is False, key
    assert boot.clean_shutdown
    assert_no_key(boot, vm.dir, fleet_key)


def test_f_an_update_signed_with_the_same_keys_gets_the_key_without_reenrollment(
        enrolled: VmDir, lab: Path, image: Path, fleet_key: Path) -> None:
    """A later build (version 2 of make update-images: another root hash, UKI and PCR 11
    value) on the enrolled machine's data partition and TPM: released, no enrollment. (The
    same happens through systemd-sysupdate in test_update.py; this swaps the whole disk.)"""
    update = image.parent.parent / "image-v2" / "llmos.raw"
    if not update.is_file():
        pytest.fail(f"no later build at {update}: run 'make update-images'", pytrace=False)
    assert update.with_suffix(".efi").read_bytes() != image.with_suffix(".efi").read_bytes()
    (lab / "update").mkdir()
    data = _raw_copy(enrolled.disk, lab / "update" / "enrolled.raw")
    updated = lab / "update" / "updated.raw"
    subprocess.run(["cp", "--sparse=always", str(update), str(updated)], check=True)
    # The same disk: as big as the enrolled one, its data partition grown by the same
    # definition the appliance applied at its first boot.
    os.truncate(updated, data.stat().st_size)
    subprocess.run(["systemd-repart", "--dry-run=no", f"--definitions={RUNTIME_REPART}",
                    str(updated)], check=True, capture_output=True)
    # The update keeps the data partition (/var: the sealed blob) and replaces the rest.
    src_start, src_size = disk.partition(data, disk.DATA)
    dst_start, dst_size = disk.partition(updated, disk.DATA)
    assert src_size == dst_size
    with data.open("rb") as src, updated.open("r+b") as dst:
        src.seek(src_start)
        dst.seek(dst_start)
        remaining = src_size
        while remaining:
            chunk = src.read(min(remaining, 16 << 20))
            dst.write(chunk)
            remaining -= len(chunk)
    data.unlink()
    vm = Clone(lab / "update" / "vm", enrolled, base=updated)
    with vm.boot("f-update") as boot:
        health = guest.settled_health(boot, vm.api)
        assert health["status"] == "ready", health
        key = health["key"]
        assert isinstance(key, dict) and key["released"] is True and key["protected"], key
        assert "sealing the fleet key" not in boot.console(), "it enrolled again"
    assert boot.clean_shutdown
    assert_no_key(boot, vm.dir, fleet_key)
