"""OVMF firmware: which code/variables pair to use, and each VM's own variable store.

Two kinds (firmware/ovmf.toml): ``secureboot`` (the default: Secure Boot enforced, the
project's keys enrolled by ``make keys``) and ``ovmf`` (Secure Boot off, no keys).
"""

from __future__ import annotations

import shutil
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from llmos_vm.errors import VmError

ROOT = Path(__file__).resolve().parents[2]
TABLE = ROOT / "firmware" / "ovmf.toml"


@dataclass(frozen=True)
class Ovmf:
    code: Path  # read-only firmware volume
    vars_template: Path  # pristine variable store, copied once per VM
    secure_boot: bool = False  # needs SMM and a secure pflash (qemu.argv)


def candidates(table: Path = TABLE, *, secure_boot: bool = True) -> tuple[Ovmf, ...]:
    entries = tomllib.loads(table.read_text())["secureboot" if secure_boot else "ovmf"]
    return tuple(Ovmf(ROOT / e["code"], ROOT / e["vars"], secure_boot) for e in entries)


def find(options: Sequence[Ovmf] | None = None, *, secure_boot: bool = True) -> Ovmf:
    """The first pair whose two files exist (Secure Boot with our keys unless told not)."""
    options = candidates(secure_boot=secure_boot) if options is None else options
    for o in options:
        if o.code.is_file() and o.vars_template.is_file():
            return o
    looked = ", ".join(f"{o.code} + {o.vars_template}" for o in options)
    raise VmError(f"no OVMF firmware found (looked for {looked})",
                  "install it (apt-get install ovmf) and make the key-enrolled variable "
                  "store (make keys), or add your distribution's paths to firmware/ovmf.toml")


def vars_for_vm(ovmf: Ovmf, dest: Path) -> Path:
    """The VM's own writable variable store, copied from the template on first use."""
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ovmf.vars_template, dest)
    return dest
