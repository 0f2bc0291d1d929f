"""The ``tpm2`` provider: the fleet key sealed in this machine's TPM 2.0 under a PCR policy.

``enroll`` seals the key with ``systemd-creds encrypt --with-key=tpm2`` into a blob file;
``release`` asks the same TPM to unseal it, which it does only while the selected PCRs hold
the values they held at enrollment. The blob embeds the credential name (``keys.credential``)
so the same file also works as ``LoadCredentialEncrypted=NAME:BLOB`` for the credential
provider. The TPM work itself is done by systemd-creds (see ``llmos.vault.systemd_creds``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from llmos.errors import KeyReleaseError
from llmos.files import atomic_write
from llmos.vault import systemd_creds
from llmos.vault.credential import check_name
from llmos.vault.kek import Kek, decode_kek, encode_kek

RELEASE_HINT = ("the PCR state changed (firmware, Secure Boot or boot chain update) or this is "
                "another TPM (or none: 'systemd-creds has-tpm2'): re-enroll with the fleet "
                "key ('llmos enroll')")
ENROLL_HINT = ("check that a TPM 2.0 is present ('systemd-creds has-tpm2') and that "
               "keys.tpm2_device and keys.tpm2_pcrs are right")


@dataclass(frozen=True)
class Tpm2Provider:
    """Releases the fleet key from ``blob``, a key sealed by (and only for) one TPM."""

    blob: Path
    device: str = "auto"
    pcrs: str = "7"
    credential: str = "llmos-fleet-key"  # the name embedded in (and checked against) the blob
    name: str = "tpm2"

    def release(self) -> Kek:
        if not self.blob.is_file():
            raise KeyReleaseError(f"no TPM-sealed fleet key at {self.blob}",
                                  "enroll this machine first: 'llmos enroll --key-file KEY' "
                                  "or '--credential NAME'")
        try:
            raw = systemd_creds.decrypt(self.blob, name=check_name(self.credential),
                                        device=self.device)
        except systemd_creds.SystemdCredsError as exc:
            raise KeyReleaseError(
                f"the TPM ({self.device}) refused to release the fleet key in {self.blob}: "
                f"systemd-creds said: {exc.stderr}", RELEASE_HINT) from exc
        return decode_kek(raw, f"TPM blob {self.blob}")

    def enroll(self, kek: Kek) -> None:
        """Seal ``kek`` to this TPM and PCR state; replace ``blob`` atomically (mode 0600)."""
        try:
            sealed = systemd_creds.encrypt_tpm2(encode_kek(kek), name=check_name(self.credential),
                                                device=self.device, pcrs=self.pcrs)
        except systemd_creds.SystemdCredsError as exc:
            raise KeyReleaseError(
                f"could not seal the fleet key to the TPM ({self.device}, PCRs {self.pcrs}): "
                f"systemd-creds said: {exc.stderr}", ENROLL_HINT) from exc
        self.blob.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.blob, [sealed], mode=0o600)

    def describe(self) -> dict[str, object]:
        return {"provider": self.name, "blob": str(self.blob), "device": self.device,
                "pcrs": self.pcrs, "credential": self.credential, "protected": True}
