"""The ``tpm2`` provider: the fleet key sealed in this machine's TPM 2.0 under a PCR policy.

``enroll`` seals the key with ``systemd-creds encrypt --with-key=tpm2`` into a blob file;
``release`` asks the same TPM to unseal it, which it does only while the selected PCRs hold
the values they held at enrollment. The blob embeds the credential name (``keys.credential``)
so the same file also works as ``LoadCredentialEncrypted=NAME:BLOB`` for the credential
provider. The TPM work itself is done by systemd-creds (see ``llmos.vault.systemd_creds``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from llmos.errors import KeyReleaseError
from llmos.files import atomic_write
from llmos.vault import boot_trust, systemd_creds
from llmos.vault.credential import check_name
from llmos.vault.kek import Kek, decode_kek, encode_kek

RELEASE_HINT = ("the PCR state changed (firmware, Secure Boot or boot chain update) or this is "
                "another TPM (or none: 'systemd-creds has-tpm2'): re-enroll with the fleet "
                "key ('llmos enroll')")
log = logging.getLogger(__name__)
ENROLL_HINT = ("check that a TPM 2.0 is present ('systemd-creds has-tpm2') and that "
               "keys.tpm2_device and keys.tpm2_pcrs are right")


@dataclass(frozen=True)
class Tpm2Provider:
    """Releases the fleet key from ``blob``, a key sealed by (and only for) one TPM."""

    blob: Path
    device: str = "auto"
    pcrs: str = "7"
    credential: str = "llmos-fleet-key"  # the name embedded in (and checked against) the blob
    signed_pcrs: str = ""  # PCRs under a signed policy (the appliance: 11), see boot_trust
    public_key: Path | None = None  # the policy's public key (None: the booted UKI's)
    signature: Path | None = None  # signature of the PCR values (None: the booted UKI's)
    # Extend PCR 11 once released (the supervisor does; enrollment's trial release does not).
    measure_release: bool = False
    name: str = "tpm2"

    def binding(self) -> boot_trust.Binding:
        return boot_trust.Binding(self.pcrs, self.signed_pcrs, boot_trust.secure_boot())

    def release(self) -> Kek:
        if not self.blob.is_file():
            raise KeyReleaseError(f"no TPM-sealed fleet key at {self.blob}",
                                  "enroll this machine first: 'llmos enroll --key-file KEY' "
                                  "or '--credential NAME'")
        try:
            raw = systemd_creds.decrypt(self.blob, name=check_name(self.credential),
                                        device=self.device, signature=self.signature)
        except systemd_creds.SystemdCredsError as exc:
            problems = self.binding().problems()
            raise KeyReleaseError(
                f"the TPM ({self.device}) refused to release the fleet key in {self.blob}: "
                f"systemd-creds said: {exc.stderr}"
                + (f" (this boot: {'; '.join(problems)})" if problems else ""),
                RELEASE_HINT) from exc
        kek = decode_kek(raw, f"TPM blob {self.blob}")
        if self.measure_release:
            try:
                boot_trust.measure_release(self.device)
            except boot_trust.MeasureError as exc:
                # Fail closed: a key that could be released again in this boot is not used.
                raise KeyReleaseError(
                    f"the fleet key was released but PCR {boot_trust.RELEASE_PCR} could not "
                    f"be extended after it ({exc}); not using it",
                    "check the TPM; reboot to try again") from exc
        for problem in self.binding().problems():
            log.warning("fleet key released on an UNPROTECTED boot: %s", problem)
        return kek

    def enroll(self, kek: Kek) -> None:
        """Seal ``kek`` to this TPM and PCR state; replace ``blob`` atomically (mode 0600)."""
        try:
            sealed = systemd_creds.encrypt_tpm2(
                encode_kek(kek), name=check_name(self.credential), device=self.device,
                pcrs=self.pcrs, signed_pcrs=self.signed_pcrs, public_key=self.public_key)
        except systemd_creds.SystemdCredsError as exc:
            raise KeyReleaseError(
                f"could not seal the fleet key to the TPM ({self.device}, PCRs {self.pcrs}): "
                f"systemd-creds said: {exc.stderr}", ENROLL_HINT) from exc
        self.blob.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.blob, [sealed], mode=0o600)

    def describe(self) -> dict[str, object]:
        return {"provider": self.name, "blob": str(self.blob), "device": self.device,
                "credential": self.credential, **self.binding().describe()}
