"""The one adapter around ``systemd-creds`` (every subprocess call to it lives here).

Why systemd-creds rather than our own TPM code: it is the tool the appliance's systemd uses
for ``LoadCredentialEncrypted=``, so a blob enrolled here can also be handed to the service
by systemd itself; it already implements the TPM 2.0 session, the SRK-bound sealed object and
the PCR policy, which are easy to get subtly wrong by hand; and it needs no Python TPM
bindings (those would be one more native dependency in the image).
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)

EXECUTABLE = "systemd-creds"
TIMEOUT_S = 60.0


class SystemdCredsError(Exception):
    """systemd-creds failed; ``stderr`` is what it said."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        super().__init__(f"{' '.join(argv[:2])} exited {returncode}: {stderr}")
        self.argv = tuple(argv)
        self.returncode = returncode
        self.stderr = stderr


def _run(argv: list[str], stdin: bytes) -> bytes:
    try:
        done = subprocess.run(argv, input=stdin, capture_output=True, timeout=TIMEOUT_S,
                              check=False)
    except FileNotFoundError:
        raise SystemdCredsError(argv, 127, f"{EXECUTABLE} is not installed") from None
    except subprocess.TimeoutExpired:
        raise SystemdCredsError(argv, 124, f"no answer within {TIMEOUT_S:.0f} s") from None
    stderr = done.stderr.decode(errors="replace").strip()
    if done.returncode != 0:
        raise SystemdCredsError(argv, done.returncode, stderr or "(no message)")
    if stderr:
        log.warning("%s %s: %s", EXECUTABLE, argv[1], stderr)
    return done.stdout


def encrypt_tpm2(plaintext: bytes, *, name: str, device: str, pcrs: str,
                 signed_pcrs: str = "", public_key: Path | None = None) -> bytes:
    """Seal ``plaintext`` to the TPM at ``device`` under a policy on ``pcrs`` (their current
    values) and, with ``signed_pcrs``, on those PCRs holding any value signed by the key
    whose public half is ``public_key`` (default: the one the booted UKI carries,
    /run/systemd/tpm2-pcr-public-key.pem); return the blob."""
    argv = [EXECUTABLE, "encrypt", f"--tpm2-device={device}", f"--tpm2-pcrs={pcrs}"]
    if signed_pcrs:
        # Plain --with-key=tpm2 silently ignores the public key options.
        argv += ["--with-key=tpm2-with-public-key", f"--tpm2-public-key-pcrs={signed_pcrs}"]
        if public_key is not None:
            argv.append(f"--tpm2-public-key={public_key}")
    else:
        argv.append("--with-key=tpm2")
    return _run([*argv, f"--name={name}", "-", "-"], plaintext)


def decrypt(blob: Path, *, name: str, device: str, signature: Path | None = None) -> bytes:
    """Unseal ``blob``; only the TPM it was sealed with, in the sealed PCR state, can (with a
    signed policy: given a signature of the current PCR values, by default the booted
    UKI's, /run/systemd/tpm2-pcr-signature.json)."""
    argv = [EXECUTABLE, "decrypt", f"--name={name}", f"--tpm2-device={device}", "--newline=no"]
    if signature is not None:
        argv.append(f"--tpm2-signature={signature}")
    return _run([*argv, str(blob), "-"], b"")
