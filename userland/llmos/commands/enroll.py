"""``llmos enroll``: seal the fleet key into this machine's TPM (first boot; idempotent).

The key comes from a file (``--key-file``, which ``--destroy-source`` then overwrites and
removes) or from a systemd credential (``--credential NAME``, read from
``$CREDENTIALS_DIRECTORY``). Blob, device and PCRs default to the ``keys.*`` settings.

Enrollment is refused while Secure Boot is off (PCR 7 would then bind the key to a boot
anyone can reproduce) unless ``--allow-insecure-boot`` says this is a development machine;
every later release on such a machine then warns (``llmos.vault.boot_trust``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from llmos import config
from llmos.errors import ConfigError, LlmosError
from llmos.vault import boot_trust
from llmos.vault.credential import CredentialProvider
from llmos.vault.enrollment import enroll
from llmos.vault.keyfile import destroy_file, read_keyfile
from llmos.vault.tpm2 import Tpm2Provider


def run(args: argparse.Namespace) -> int:
    if args.destroy_source and args.key_file is None:
        raise ConfigError("--destroy-source applies to --key-file only",
                          "a systemd credential lives in ramfs and goes away by itself")
    cfg = config.load(args.config, overrides={"keys.tpm2_blob": args.blob,
                                              "keys.tpm2_device": args.tpm2_device,
                                              "keys.tpm2_pcrs": args.pcrs,
                                              "keys.tpm2_signed_pcrs": args.signed_pcrs,
                                              "keys.tpm2_public_key": args.public_key,
                                              "keys.tpm2_signature": args.signature})
    tpm = Tpm2Provider(blob=cfg["keys.tpm2_blob"], device=cfg["keys.tpm2_device"],
                       pcrs=cfg["keys.tpm2_pcrs"], credential=cfg["keys.credential"],
                       signed_pcrs=cfg["keys.tpm2_signed_pcrs"],
                       public_key=cfg["keys.tpm2_public_key"],
                       signature=cfg["keys.tpm2_signature"])
    if boot_trust.secure_boot() is not True:
        if not args.allow_insecure_boot:
            raise LlmosError("Secure Boot is off on this machine: a key sealed now would be "
                             "released to any boot that also has it off",
                             "turn Secure Boot on with the fleet's keys enrolled "
                             "(docs/security.md), or pass --allow-insecure-boot (development)")
        print("WARNING: enrolling with Secure Boot off (--allow-insecure-boot): this "
              "machine is not protected")
    if args.key_file is not None:
        kek = read_keyfile(args.key_file)
    else:
        kek = CredentialProvider(credential=args.credential).release()
    outcome = enroll(tpm, kek)
    print(f"fleet key {kek.id}: {outcome.value} in {tpm.blob} "
          f"(TPM {tpm.device}, PCRs {tpm.pcrs})")
    if args.destroy_source:
        destroy_file(args.key_file)
        print(f"overwrote and removed {args.key_file}")
    return 0


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "enroll", help="seal the fleet key into this machine's TPM (first boot)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--key-file", type=Path, help="fleet key file ('llmos keygen')")
    source.add_argument("--credential", metavar="NAME",
                        help="systemd credential holding the fleet key")
    p.add_argument("--blob", type=Path, help="TPM-sealed key to write (keys.tpm2_blob)")
    p.add_argument("--pcrs", help="PCRs to bind to, e.g. 7 or 7+14 (keys.tpm2_pcrs)")
    p.add_argument("--signed-pcrs", help="PCRs bound through a signed policy, e.g. 11 "
                                          "(keys.tpm2_signed_pcrs)")
    p.add_argument("--public-key", type=Path,
                   help="public key of the signed policy (keys.tpm2_public_key)")
    p.add_argument("--signature", type=Path,
                   help="signature of the PCR values, for the trial release "
                        "(keys.tpm2_signature)")
    p.add_argument("--allow-insecure-boot", action="store_true",
                   help="enroll although Secure Boot is off (development only)")
    p.add_argument("--tpm2-device", help="auto, /dev/tpmrm0 or swtpm:path=SOCK "
                                         "(keys.tpm2_device)")
    p.add_argument("--destroy-source", action="store_true",
                   help="overwrite and delete --key-file once the key is enrolled")
    p.add_argument("--config", type=Path, help="configuration file for the keys.* defaults")
    p.set_defaults(func=run)
