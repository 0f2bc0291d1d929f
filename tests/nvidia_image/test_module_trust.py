"""The nvidia image under Secure Boot: its DKMS-built driver loads where the firmware's db
holds the module signing key, and nowhere else (``make test-nvidia-image``; not part of
``make test``: the image takes minutes and gigabytes to build).

Debian's kernel locks itself down when it boots with Secure Boot on and then loads only
modules signed by a key it trusts: its own, built in, and those of the platform keyring,
which it fills from the firmware's db (Debian's "db-mok-keyring" patches). The image build
signs the NVIDIA modules with ``build/keys/secureboot/modules.key``; a GPU server's
firmware has ``modules.crt`` in db beside ``db.crt`` (``OVMF_VARS.gpu.fd``, image/keys.sh).

Two boots of the same disk, Secure Boot enforced, no GPU in the VM:

- db with the module key: the kernel accepts the signature and links the driver in (it
  taints itself: an out-of-tree module under a proprietary licence), and the driver's
  own code runs (its "NVRM:" lines; it then finds no GPU in QEMU);
- db without it (the default profile's firmware): the kernel refuses the same modules
  before any of their code runs (lockdown: "unsigned module loading is restricted").

``systemd-modules-load`` loads the driver at every boot (modules-load.d of the profile).
The kernel's log level is raised so that its notices reach the console, through the SMBIOS
command line extension (which systemd-stub measures into PCR 12). The supervisor starts as
on any boot; this VM has no provisioning key, so it serves without one (not enrolled).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from llmos_vm import credentials, ovmf
from llmos_vm.machine import Boot, VmDir

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.boot

IMAGE = ROOT / "build" / "image-nvidia" / "llmos.raw"
KEYS = ROOT / "build" / "keys" / "secureboot"
LAB = ROOT / "build" / "test-nvidia-image"
BOOT_TIMEOUT_S = 30 * 60.0
CMDLINE = credentials.kernel_cmdline_extra("loglevel=7")

LOCKED_DOWN = re.compile(r"Kernel is locked down from EFI Secure Boot")
LINKED = re.compile(r"nvidia\S*: (loading out-of-tree module|module license .*) taints kernel")
DRIVER_RAN = re.compile(r"NVRM: ")
REFUSED = re.compile(r"Loading of .* is rejected|Lockdown: .*unsigned module loading is restricted")
UNREADABLE = re.compile(r"decompression failed")
BOOTED = r"llmos-boot: done"


def boot_console(vars_template: Path, name: str) -> str:
    """The console of one boot of a fresh VM on the nvidia image with ``vars_template`` as
    its firmware's variables, up to the boot report's last line."""
    if not IMAGE.is_file():
        pytest.fail(f"no nvidia image at {IMAGE.relative_to(ROOT)}: run 'make image-nvidia' "
                    "(make test-nvidia-image does it first)", pytrace=False)
    if not vars_template.is_file():
        pytest.fail(f"no variable store at {vars_template}: run 'make keys'", pytrace=False)
    secure = ovmf.find()
    firmware = ovmf.Ovmf(secure.code, vars_template, secure_boot=True)
    vm = VmDir(LAB / name)
    shutil.rmtree(vm.root, ignore_errors=True)
    vm.prepare(IMAGE, firmware)
    with Boot(vm, label="boot", smbios=[CMDLINE], firmware=firmware) as boot:
        boot.wait_console(BOOTED, timeout_s=BOOT_TIMEOUT_S)
        return boot.console()


def lines(console: str, pattern: re.Pattern[str]) -> list[str]:
    return [line for line in console.splitlines() if pattern.search(line)]


def test_module_key_in_db_lets_the_signed_driver_load() -> None:
    console = boot_console(KEYS / "OVMF_VARS.gpu.fd", "db-with-module-key")
    assert lines(console, LOCKED_DOWN), "the kernel did not lock itself down under Secure Boot"
    assert not lines(console, UNREADABLE), lines(console, UNREADABLE)
    assert not lines(console, REFUSED), lines(console, REFUSED)
    assert lines(console, LINKED), "the kernel did not link the NVIDIA modules in"
    assert lines(console, DRIVER_RAN), "no line of the NVIDIA driver's own on the console"


def test_without_the_module_key_the_kernel_refuses_the_driver() -> None:
    console = boot_console(KEYS / "OVMF_VARS.fd", "db-without-module-key")
    assert lines(console, LOCKED_DOWN), "the kernel did not lock itself down under Secure Boot"
    assert not lines(console, UNREADABLE), lines(console, UNREADABLE)
    assert lines(console, REFUSED), "the kernel did not refuse the driver's modules"
    assert not lines(console, LINKED), lines(console, LINKED)
    assert not lines(console, DRIVER_RAN), lines(console, DRIVER_RAN)
