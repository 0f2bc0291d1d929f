"""The ``credential`` provider: the fleet key as a systemd credential.

systemd decrypts ``LoadCredentialEncrypted=NAME:BLOB`` (with the TPM or the host key) before
the service starts and hands the result over in ``$CREDENTIALS_DIRECTORY/NAME``, a
non-swappable ramfs only this service can read. The provider only reads that file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from llmos.credentials import credentials_directory
from llmos.errors import ConfigError, KeyReleaseError
from llmos.vault.kek import Kek, decode_kek


def _directory(environ: Mapping[str, str] | None) -> Path:
    directory = credentials_directory(os.environ if environ is None else environ)
    if directory is None:
        raise KeyReleaseError(
            "$CREDENTIALS_DIRECTORY is not set: no systemd credentials were passed",
            "run under systemd with LoadCredentialEncrypted=NAME:BLOB (or LoadCredential=)")
    return directory


def check_name(name: str) -> str:
    if not name or "/" in name or name in (".", ".."):
        raise ConfigError(f"{name!r} is not a valid credential name",
                          "a credential name is a plain file name, e.g. llmos-fleet-key")
    return name


@dataclass(frozen=True)
class CredentialProvider:
    """Releases the fleet key from ``$CREDENTIALS_DIRECTORY/<credential>``."""

    credential: str
    environ: Mapping[str, str] | None = None  # None: the process environment
    name: str = "credential"

    def path(self) -> Path:
        return _directory(self.environ) / check_name(self.credential)

    def release(self) -> Kek:
        path = self.path()
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise KeyReleaseError(
                f"credential {self.credential!r} is not readable at {path}: {exc.strerror}",
                f"add LoadCredentialEncrypted={self.credential}:BLOB to the service") from exc
        return decode_kek(raw, f"credential {self.credential!r}")

    def describe(self) -> dict[str, object]:
        return {"provider": self.name, "credential": self.credential, "protected": True}
