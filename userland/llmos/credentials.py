"""Where systemd's credentials for this service are (pure lookups, stdlib only).

``LoadCredential=``, ``ImportCredential=`` and ``LoadCredentialEncrypted=`` hand each
credential over as a file in ``$CREDENTIALS_DIRECTORY``, a non-swappable ramfs only this
service reads; this module is the one place that looks there.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path


def credentials_directory(environ: Mapping[str, str]) -> Path | None:
    """``$CREDENTIALS_DIRECTORY``, None when systemd passed no credentials."""
    directory = environ.get("CREDENTIALS_DIRECTORY")
    return Path(directory) if directory else None


def credential(environ: Mapping[str, str], name: str) -> Path | None:
    """The file of credential ``name``, None when systemd did not pass it."""
    directory = credentials_directory(environ)
    if directory is None:
        return None
    path = directory / name
    return path if path.is_file() else None
