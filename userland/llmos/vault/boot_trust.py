"""Whether this boot is one the fleet key may be released to, and closing the door after it.

The appliance's fleet key is sealed (``llmos.vault.tpm2``) under a TPM policy of two parts:

- fixed PCR values (``keys.tpm2_pcrs``, normally ``7``: the Secure Boot state and the keys
  that verified the boot, so only a boot our db key signed, with Secure Boot on, matches);
- a *signed* policy on PCR 11 (``keys.tpm2_signed_pcrs``): systemd-stub measures the whole
  unified kernel image (kernel, initrd, command line with the dm-verity root hash) into
  PCR 11, and the image build signs the values PCR 11 will hold (mkosi ``SignExpectedPcr=``).
  The TPM releases the key for any image signed with the fleet's PCR key, so an update
  needs no re-enrollment, and for nothing else.

Once the supervisor holds the key it extends PCR 11 with ``RELEASE_WORD``: no signed value
matches after that, so nothing later in the same boot (a second start of the supervisor
included) can have the key released again.

``Binding`` is the pure part: what the key is bound to, and whether that is the protected
configuration; ``secure_boot`` reads the firmware's variable; ``measure_release`` extends
the PCR with tpm2-tools' ``tpm2_pcrextend`` (SHA-256 bank, the one the policy is signed
for). Not systemd-pcrextend: it does nothing at all unless systemd-stub measured the
kernel (so a host test could not see it work), and it is no safer.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

EFIVARS = Path("/sys/firmware/efi/efivars")
EFI_GLOBAL_VARIABLE = "8be4df61-93ca-11d2-aa0d-00e098032b8c"
RELEASE_PCR = 11
RELEASE_WORD = "llmos-fleet-key-released"
PCREXTEND = "tpm2_pcrextend"
TIMEOUT_S = 60.0


class MeasureError(Exception):
    """The PCR could not be extended."""


def secure_boot(efivars: Path = EFIVARS) -> bool | None:
    """Whether the firmware booted with Secure Boot enforced; None without UEFI variables
    (not a UEFI boot, or efivarfs not mounted). The variable: 4 attribute bytes, 1 value."""
    try:
        data = (efivars / f"SecureBoot-{EFI_GLOBAL_VARIABLE}").read_bytes()
    except FileNotFoundError:
        return False if efivars.is_dir() else None
    except OSError:
        return None
    return len(data) >= 5 and data[4] == 1


def pcr_set(spec: str) -> frozenset[int]:
    """The PCR indexes of a systemd-creds PCR list ("7+11", "7,11"; names not used here)."""
    out: set[int] = set()
    for part in spec.replace(",", "+").split("+"):
        part = part.strip().split(":")[0].split("=")[0]
        if part.isdigit():
            out.add(int(part))
    return frozenset(out)


@dataclass(frozen=True)
class Binding:
    """What the fleet key is bound to on this machine, and the state of this boot."""

    pcrs: str  # fixed-value PCRs
    signed_pcrs: str  # PCRs under the signed policy ("": none)
    secure_boot: bool | None

    @property
    def policy_signed(self) -> bool:
        return RELEASE_PCR in pcr_set(self.signed_pcrs)

    @property
    def protected(self) -> bool:
        """Secure Boot on, the key bound to PCR 7 and to the signed PCR 11 policy."""
        return self.secure_boot is True and 7 in pcr_set(self.pcrs) and self.policy_signed

    def problems(self) -> list[str]:
        out = []
        if self.secure_boot is not True:
            out.append("Secure Boot is off" if self.secure_boot is False
                       else "Secure Boot state unknown (not a UEFI boot)")
        if 7 not in pcr_set(self.pcrs):
            out.append("the key is not bound to PCR 7 (Secure Boot state and keys)")
        if not self.policy_signed:
            out.append("the key is not bound to a signed PCR 11 policy (the signed image)")
        return out

    def describe(self) -> dict[str, object]:
        return {"secure_boot": self.secure_boot, "pcrs": self.pcrs,
                "signed_pcrs": self.signed_pcrs, "policy_signed": self.policy_signed,
                "protected": self.protected, "problems": self.problems()}


def tcti(device: str) -> str:
    """The tpm2-tools TCTI for a systemd-style TPM device (auto, /dev/tpmrm0, swtpm:...)."""
    if device == "auto":
        return "device:/dev/tpmrm0"
    return f"device:{device}" if device.startswith("/") else device


def measure_release(device: str = "auto", tool: str = PCREXTEND) -> None:
    """Extend PCR 11 with RELEASE_WORD: the signed policy no longer matches in this boot."""
    digest = hashlib.sha256(RELEASE_WORD.encode()).hexdigest()
    argv = [tool, f"{RELEASE_PCR}:sha256={digest}"]
    env = {**os.environ, "TPM2TOOLS_TCTI": tcti(device)}
    try:
        done = subprocess.run(argv, env=env, capture_output=True, timeout=TIMEOUT_S, check=False)
    except FileNotFoundError:
        raise MeasureError(f"{tool} is not installed (tpm2-tools)") from None
    except subprocess.TimeoutExpired:
        raise MeasureError(f"{tool} gave no answer within {TIMEOUT_S:.0f} s") from None
    if done.returncode != 0:
        said = done.stderr.decode(errors="replace").strip() or "(no message)"
        raise MeasureError(f"{tool} exited {done.returncode}: {said}")
    log.info("PCR %d extended with %r: the fleet key cannot be released again in this boot",
             RELEASE_PCR, RELEASE_WORD)
