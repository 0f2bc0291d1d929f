"""First-boot enrollment: bind the fleet key to this machine's TPM, idempotently.

The new blob is written beside the old one and proven by one release before it replaces
anything, so a failed enrollment never leaves the machine worse off than before.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import replace

from llmos.errors import KeyReleaseError, LlmosError
from llmos.vault.kek import Kek
from llmos.vault.tpm2 import Tpm2Provider

log = logging.getLogger(__name__)


class Outcome(enum.Enum):
    ENROLLED = "enrolled"  # there was no blob
    UNCHANGED = "unchanged"  # the blob already releases this key
    REENROLLED = "re-enrolled"  # the old blob no longer released (PCRs changed, other TPM)


def enroll(tpm: Tpm2Provider, kek: Kek) -> Outcome:
    outcome = Outcome.ENROLLED
    if tpm.blob.exists():
        try:
            current = tpm.release()
        except KeyReleaseError as exc:
            log.warning("the existing blob %s cannot be released (%s); enrolling again",
                        tpm.blob, exc.message)
            outcome = Outcome.REENROLLED
        else:
            if current.id == kek.id:
                return Outcome.UNCHANGED
            raise LlmosError(
                f"{tpm.blob} already holds fleet key {current.id}, not {kek.id}",
                "to re-key this machine, delete the blob first (packs sealed for "
                f"{current.id} will no longer open)")
    staging = replace(tpm, blob=tpm.blob.with_name(tpm.blob.name + ".new"))
    try:
        staging.enroll(kek)
        released = staging.release()
        if released.id != kek.id:
            raise KeyReleaseError(
                f"the TPM released fleet key {released.id} right after sealing {kek.id}",
                "the TPM misbehaves; check keys.tpm2_device")
        staging.blob.replace(tpm.blob)
    finally:
        staging.blob.unlink(missing_ok=True)
    return outcome
