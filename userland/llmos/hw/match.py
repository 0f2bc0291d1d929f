"""Which PCI functions count as accelerators: a table of rules (pure data).

A rule matches on the PCI vendor (or any vendor) and on the 24-bit class code under a
mask. The first matching rule names the vendor family. Pass your own table to
``llmos.hw.inventory.scan`` to follow other devices.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

NVIDIA = 0x10DE
AMD = 0x1002
INTEL = 0x8086

# Masks over the 24-bit class code (class << 16 | subclass << 8 | prog-if).
CLASS_AND_SUBCLASS = 0xFFFF00
CLASS_ONLY = 0xFF0000


@dataclass(frozen=True)
class MatchRule:
    vendor: str  # family name used by placement and shown on the admin page
    vendor_id: int | None  # None: any vendor
    class_code: int
    class_mask: int
    label: str

    def matches(self, vendor_id: int, class_code: int) -> bool:
        if self.vendor_id is not None and vendor_id != self.vendor_id:
            return False
        return (class_code & self.class_mask) == (self.class_code & self.class_mask)


DEFAULT_RULES: tuple[MatchRule, ...] = (
    MatchRule("nvidia", NVIDIA, 0x030000, CLASS_AND_SUBCLASS, "NVIDIA VGA-compatible controller"),
    MatchRule("nvidia", NVIDIA, 0x030200, CLASS_AND_SUBCLASS, "NVIDIA 3D controller"),
    MatchRule("amd", AMD, 0x030000, CLASS_ONLY, "AMD display controller"),
    MatchRule("intel", INTEL, 0x030000, CLASS_ONLY, "Intel display controller"),
    MatchRule("generic", None, 0x120000, CLASS_ONLY, "processing accelerator"),
)


def match(
    vendor_id: int, class_code: int, rules: Iterable[MatchRule] = DEFAULT_RULES
) -> MatchRule | None:
    """The first rule matching this PCI function, or None (not an accelerator)."""
    return next((r for r in rules if r.matches(vendor_id, class_code)), None)
