"""Where the admin password hash lives, and how it is provisioned (file I/O only).

The hash file (``<state_dir>/admin-password``, mode 0600) holds one encoded
``PasswordHash`` line. At start the admin listener provisions it, first match wins:

1. the file exists: use it (``llmos admin set-password`` changes it);
2. a systemd credential ``llmos-admin-password`` ($CREDENTIALS_DIRECTORY) holds the
   password: hash it into the file (first boot of the appliance);
3. demo mode (``llmos serve`` on a host, not under systemd): generate a random password,
   hash it into the file, and hand the password back once so the caller can show it;
4. otherwise no password: logging in is impossible until one is set (said loudly).
"""

from __future__ import annotations

import enum
import logging
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from llmos.admin.password import PasswordHash, generate_password, hash_password
from llmos.credentials import credential
from llmos.errors import ConfigError
from llmos.files import atomic_write

log = logging.getLogger(__name__)

CREDENTIAL = "llmos-admin-password"
FILE_NAME = "admin-password"
MODE = 0o600


def hash_path(state_dir: Path) -> Path:
    return state_dir / FILE_NAME


def read_hash(path: Path) -> PasswordHash | None:
    """The stored hash, or None when no password was set."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read the admin password hash {path}: {exc.strerror}",
                          "check the state directory's ownership and permissions") from exc
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("%s is readable by others (mode %04o); tightening it to %04o",
                    path, mode, MODE)
        os.chmod(path, MODE)
    return PasswordHash.decode(text)


def write_hash(path: Path, value: PasswordHash) -> None:
    """Replace the hash atomically; the file is created 0600 (never readable by others)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(path, [value.encode().encode() + b"\n"], mode=MODE)
    except OSError as exc:
        raise ConfigError(f"cannot write the admin password hash {path}: {exc.strerror}",
                          "check that server.state_dir exists and is writable") from exc


def set_password(path: Path, password: str) -> PasswordHash:
    value = hash_password(password)
    write_hash(path, value)
    return value


class Source(enum.Enum):
    FILE = "file"
    CREDENTIAL = "credential"
    GENERATED = "generated"
    NONE = "none"


@dataclass(frozen=True)
class Provisioned:
    source: Source
    hash: PasswordHash | None
    generated: str | None = None  # the clear password, only when just generated (show once)


def credential_password(environ: Mapping[str, str]) -> str | None:
    """The password in $CREDENTIALS_DIRECTORY/llmos-admin-password, if systemd passed one."""
    given = credential(environ, CREDENTIAL)
    if given is None:
        return None
    try:
        raw = given.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read the credential {CREDENTIAL}: {exc.strerror}",
                          "check LoadCredential= in the service unit") from exc
    password = raw.rstrip("\r\n")
    return password or None


def provision(path: Path, environ: Mapping[str, str], *, generate: bool) -> Provisioned:
    """Find or make the admin password hash (see the module docstring for the order)."""
    existing = read_hash(path)
    if existing is not None:
        if credential_password(environ) is not None:
            log.info("admin password already set in %s; the %s credential is not used "
                     "(change it with 'llmos admin set-password')", path, CREDENTIAL)
        return Provisioned(Source.FILE, existing)
    from_credential = credential_password(environ)
    if from_credential is not None:
        value = set_password(path, from_credential)
        log.info("admin password provisioned from the %s credential into %s", CREDENTIAL, path)
        return Provisioned(Source.CREDENTIAL, value)
    if generate:
        password = generate_password()
        value = set_password(path, password)
        log.warning("admin password generated (demo mode); its hash is in %s", path)
        return Provisioned(Source.GENERATED, value, generated=password)
    log.error("no admin password is set: the admin page refuses every login (hint: pass the "
              "%s credential at provisioning, or run 'llmos admin set-password')", CREDENTIAL)
    return Provisioned(Source.NONE, None)
