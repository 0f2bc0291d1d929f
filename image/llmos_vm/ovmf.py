"""OVMF firmware: which code/variables pair to use, and each VM's own variable store."""

from __future__ import annotations

import shutil
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from llmos_vm.errors import VmError

TABLE = Path(__file__).resolve().parents[2] / "firmware" / "ovmf.toml"


@dataclass(frozen=True)
class Ovmf:
    code: Path  # read-only firmware volume
    vars_template: Path  # pristine variable store, copied once per VM


def candidates(table: Path = TABLE) -> tuple[Ovmf, ...]:
    entries = tomllib.loads(table.read_text())["ovmf"]
    return tuple(Ovmf(Path(e["code"]), Path(e["vars"])) for e in entries)


def find(options: Sequence[Ovmf] | None = None) -> Ovmf:
    """The first pair whose two files exist."""
    options = candidates() if options is None else options
    for o in options:
        if o.code.is_file() and o.vars_template.is_file():
            return o
    raise VmError(f"no OVMF firmware found (looked for {', '.join(str(o.code) for o in options)})",
                  "install it: apt-get install ovmf (or add your distribution's paths to "
                  "firmware/ovmf.toml)")


def vars_for_vm(ovmf: Ovmf, dest: Path) -> Path:
    """The VM's own writable variable store, copied from the template on first use."""
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ovmf.vars_template, dest)
    return dest
