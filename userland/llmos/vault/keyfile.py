"""Fleet key files, and the development-only ``keyfile`` provider.

A key file is the fleet key in clear: fine on the build machine that seals packs, never
acceptable on an appliance (config refuses the provider unless ``keys.allow_dev_key``).
"""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from llmos.errors import KeyReleaseError, LlmosError
from llmos.vault.kek import Kek, decode_kek, encode_kek

log = logging.getLogger(__name__)


def read_keyfile(path: Path) -> Kek:
    try:
        raw = path.read_bytes()
        mode = path.stat().st_mode
    except OSError as exc:
        raise KeyReleaseError(f"cannot read fleet key file {path}: {exc.strerror}",
                              "pass the file written by 'llmos keygen'") from exc
    if mode & 0o077:
        log.warning("fleet key file %s is readable by others (mode %o); chmod 600 it",
                    path, mode & 0o777)
    return decode_kek(raw, f"key file {path}")


def write_keyfile(path: Path, kek: Kek) -> None:
    """Create ``path`` with mode 0600 holding ``kek``; refuse to overwrite anything."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        raise LlmosError(f"{path} already exists; a fleet key file is never overwritten",
                         "choose another --out, or delete the old key only if no pack "
                         "or machine still needs it") from None
    except OSError as exc:
        raise LlmosError(f"cannot create {path}: {exc.strerror}",
                         "check that the folder exists and is writable") from exc
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, encode_kek(kek))
        os.fsync(fd)
    finally:
        os.close(fd)


def destroy_file(path: Path) -> None:
    """Overwrite a key file with random bytes, flush, and unlink it.

    Best effort only: copy-on-write file systems and flash wear levelling may keep old
    blocks; the point is that the key no longer sits in a readable file.
    """
    size = path.stat().st_size
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, secrets.token_bytes(size))
        os.fsync(fd)
    finally:
        os.close(fd)
    path.unlink()


@dataclass(frozen=True)
class KeyfileProvider:
    """Releases the fleet key from a plain file. Development only: warns on every release."""

    path: Path
    name: str = "keyfile"

    def release(self) -> Kek:
        kek = read_keyfile(self.path)
        log.warning("DEVELOPMENT KEY: fleet key %s released from the unprotected file %s; "
                    "use keys.provider = tpm2 on a real machine", kek.id, self.path)
        return kek

    def describe(self) -> dict[str, object]:
        return {"provider": self.name, "path": str(self.path), "protected": False}
