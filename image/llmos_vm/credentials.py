"""systemd credentials and stub settings for the guest, as QEMU SMBIOS type 11 strings.

systemd (PID 1) imports ``io.systemd.credential[.binary]:NAME=VALUE`` strings as system
credentials; units receive them with ``ImportCredential=NAME``. systemd-stub appends
``io.systemd.stub.kernel-cmdline-extra=`` to the kernel command line (and measures it into
PCR 12, which the fleet key is not bound to). Nothing here touches the disk image.
"""

from __future__ import annotations

import base64
import re

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
