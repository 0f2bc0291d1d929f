"""Key providers: where the fleet key (KEK) comes from, behind one protocol.

======================  ==============================================  ==================
provider                the fleet key lives                             use
======================  ==============================================  ==================
``tpm2`` (default)      sealed in this machine's TPM 2.0 under a PCR    appliances
                        policy (``keys.tpm2_blob``), released by that
                        TPM only, in that measured state
``credential``          a systemd credential: systemd decrypts          appliances run by
                        ``LoadCredentialEncrypted=`` into               a unit file
                        ``$CREDENTIALS_DIRECTORY/<keys.credential>``
``keyfile``             a plain file (``keys.keyfile``); refused        development only
                        unless ``keys.allow_dev_key``; warns on every
                        release
======================  ==============================================  ==================
"""

from __future__ import annotations

from typing import Protocol

from llmos.config import Config
from llmos.errors import ConfigError
from llmos.vault.credential import CredentialProvider
from llmos.vault.kek import Kek, generate_kek
from llmos.vault.keyfile import KeyfileProvider, read_keyfile, write_keyfile
from llmos.vault.tpm2 import Tpm2Provider

__all__ = ["Kek", "KeyProvider", "generate_kek", "provider_from_config", "read_keyfile",
           "write_keyfile"]


class KeyProvider(Protocol):
    """Releases the fleet key. ``describe`` is for people (admin page, logs): no secrets."""

    @property
    def name(self) -> str: ...

    def release(self) -> Kek: ...

    def describe(self) -> dict[str, object]: ...


def provider_from_config(cfg: Config) -> KeyProvider:
    kind = cfg["keys.provider"]
    if kind == "tpm2":
        return Tpm2Provider(blob=cfg["keys.tpm2_blob"], device=cfg["keys.tpm2_device"],
                            pcrs=cfg["keys.tpm2_pcrs"], credential=cfg["keys.credential"],
                            signed_pcrs=cfg["keys.tpm2_signed_pcrs"],
                            public_key=cfg["keys.tpm2_public_key"],
                            signature=cfg["keys.tpm2_signature"],
                            measure_release=bool(cfg["keys.tpm2_signed_pcrs"]))
    if kind == "credential":
        return CredentialProvider(credential=cfg["keys.credential"])
    if kind == "keyfile":
        # config.finalize refuses this already; a Config built by hand must not slip through.
        if not cfg["keys.allow_dev_key"] or cfg["keys.keyfile"] is None:
            raise ConfigError("the keyfile provider needs keys.keyfile and keys.allow_dev_key",
                              "pass --keyfile PATH --allow-dev-key (development only)")
        return KeyfileProvider(path=cfg["keys.keyfile"])
    raise ConfigError(f"unknown key provider {kind!r}", "one of tpm2, credential, keyfile")
