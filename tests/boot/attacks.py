"""What the attack tests inject, and the search for the fleet key after a hostile boot.

The injected commands print ``ATTACK_MARKER`` first and then try to have the TPM release the
key: the marker's absence on the console shows they never ran, and the key's absence
(raw, hex, base64) from the console and the VM's disk shows nothing leaked it.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path

from llmos_vm import credentials
from llmos_vm.disk import find_all
from llmos_vm.machine import Boot, VmDir

from llmos.vault.keyfile import read_keyfile

ATTACK_MARKER = "LLMOS-ATTACK-RAN"
BLOB = "/var/lib/llmos/fleet-key.tpm2"
STEAL = (f"/bin/sh -c 'echo {ATTACK_MARKER}; systemd-creds decrypt --name=llmos-fleet-key "
         f"{BLOB} -; tpm2_pcrread sha256:7,11,12'")


HOSTILE_SETTINGS = "\n".join([
    "[server]", f"request_timeout_s = {credentials.EMULATED_REQUEST_TIMEOUT_S}",
    '[keys]', 'provider = "keyfile"', 'keyfile = "/run/evil.key"', "allow_dev_key = true",
    "[[models]]", 'name = "evil"', 'pack = "/run/evil.sealed"', ""])
# What the supervisor says of each key it refuses (llmos.config.site_settings).
REFUSED_SETTINGS = ("'keys.provider' is not a setting a machine may change",
                    "'models' is not a section of settings")


@dataclass(frozen=True)
class Hostile:
    """Credentials a hypervisor hands in: SMBIOS strings and fw_cfg files."""

    smbios: tuple[str, ...]
    fw_cfg: tuple[tuple[str, Path], ...]


def hostile_credentials(workdir: Path) -> Hostile:
    """Unit drop-ins (SMBIOS credentials), one of them pulling in an extra unit (an fw_cfg
    credential), and tmpfiles and sysctl lines: each would run STEAL if honoured. And the
    machine's llmos-settings naming a key file and a pack (HOSTILE_SETTINGS)."""
    workdir.mkdir(parents=True)
    extra_unit = workdir / "extra-unit"
    extra_unit.write_text(f"[Unit]\nDefaultDependencies=no\n[Service]\nType=oneshot\n"
                          f"StandardOutput=journal+console\nExecStart={STEAL}\n")
    dropin = f"[Service]\nExecStartPre=+{STEAL}\n"
    smbios = (credentials.credential("systemd.unit-dropin.llmos.service", dropin.encode()),
              credentials.credential("systemd.unit-dropin.sysinit.target",
                                     b"[Unit]\nWants=x.service\n"),
              credentials.credential("tmpfiles.extra",
                                     b"f+ /run/systemd/system/llmos.service.d/x.conf - - - - "
                                     b"[Service]\\nExecStartPre=+/bin/echo "
                                     + ATTACK_MARKER.encode() + b"\n"),
              credentials.credential("sysctl.extra", b"kernel.core_pattern=|/bin/sh -c x\n"),
              # the machine's settings, with a key file instead of the TPM and a pack of
              # the attacker's beside the deadline the emulated machine needs
              credentials.credential(credentials.SETTINGS, HOSTILE_SETTINGS.encode()))
    # fw_cfg file names are at most 55 characters.
    return Hostile(smbios, (("opt/io.systemd.credentials/systemd.extra-unit.x.service",
                             extra_unit),))


def key_needles(fleet_key: Path) -> list[bytes]:
    key = read_keyfile(fleet_key).key
    return [key, key.hex().encode(), key.hex().upper().encode(), base64.b64encode(key)]


def assert_no_key(boot: Boot, vm: VmDir, fleet_key: Path) -> None:
    """No injected command ran, and no key bytes on the console or the VM's disk."""
    console = boot.serial_log.read_bytes() if boot.serial_log else b""
    needles = key_needles(fleet_key)
    assert not [n for n in needles if n in console], "fleet key bytes on the console"
    assert ATTACK_MARKER not in boot.console(), "the injected command ran"
    hits = list(find_all(vm.disk, needles))
    assert not hits, f"fleet key bytes on the disk at {[o for _, o in hits][:5]}"
