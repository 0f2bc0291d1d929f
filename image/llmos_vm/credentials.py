"""systemd credentials and stub settings for the guest, as QEMU SMBIOS type 11 strings.

systemd (PID 1) imports ``io.systemd.credential[.binary]:NAME=VALUE`` strings as system
credentials; units receive them with ``ImportCredential=NAME``. systemd-stub appends
``io.systemd.stub.kernel-cmdline-extra=`` to the kernel command line (and measures it into
PCR 12, which the fleet key is not bound to). Nothing here touches the disk image.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")


def credential(name: str, value: bytes) -> str:
    """A binary credential (base64, so any bytes survive the SMBIOS string)."""
    if not _NAME.match(name):
        raise ValueError(f"invalid credential name {name!r}")
    return f"io.systemd.credential.binary:{name}={base64.b64encode(value).decode()}"


def kernel_cmdline_extra(*args: str) -> str:
    return "io.systemd.stub.kernel-cmdline-extra=" + " ".join(args)


def smbios_option(string: str) -> str:
    """The ``-smbios`` argument (QEMU's option syntax escapes a comma as two)."""
    return "type=11,value=" + string.replace(",", ",,")


SETTINGS = "llmos-settings"

# Under TCG the guest runs its inference far slower than the hardware it stands in for (a
# one-row SmolLM2 step: 18-23 ms natively, bench/results/llm_rows.md; its one-token warm-up
# 3.4-12.5 s emulated, by the host: llmos_vm.accel), so the 30 s deadline of a request
# (server.request_timeout_s) is the hardware's, not this machine's.
# As a slow edge box would be, the emulated machine is provisioned with its own; it stays
# under the boot tests' client timeout (tests/boot/guest.py), so a stuck request still
# shows as the server's 504.
EMULATED_REQUEST_TIMEOUT_S = 240


def emulated_machine_settings() -> str:
    """The ``llmos-settings`` credential of an emulated machine (docs/configuration.md)."""
    return credential(SETTINGS, f"[server]\nrequest_timeout_s = "
                                f"{EMULATED_REQUEST_TIMEOUT_S}\n".encode())


def names(smbios: Sequence[str]) -> set[str]:
    """The credential names among SMBIOS strings."""
    out = set()
    for string in smbios:
        head, _, rest = string.partition(":")
        if head.startswith("io.systemd.credential"):
            out.add(rest.split("=", 1)[0])
    return out
