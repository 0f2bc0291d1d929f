"""The guest's boot report (``llmos-boot-report.service``), read off the serial console.

The guest prints it once, when the boot is complete (multi-user.target reached, and the
supervisor ready, failed or masked), as three lines::

    llmos-boot: multi-user uptime=S cpu_busy=S cpu_idle=S
    llmos-boot: units NAME=S ...
    llmos-boot: done supervisor=STATE supervisor_start=S supervisor_ready=S multi_user=S ...

The first comes at once (the script prints it with shell built-ins only), so its arrival on
the console can time a boot; the last says the report is complete. Times are the guest's
clock (seconds since its kernel started; 0: never).

The console also carries the listeners' TLS certificates (the admin page's, and the API's
when it speaks HTTPS), as each start of the supervisor logs them: ``certificates``.
"""

from __future__ import annotations

import re

TIMED = "llmos-boot: multi-user"
DONE = "llmos-boot: done"


def certificate_line(role: str) -> re.Pattern[str]:
    """The supervisor's line naming listener ``role``'s ("admin", "api") certificate."""
    return re.compile(rf"{role} TLS certificate \(([\w-]+)\), SHA-256 fingerprint "
                      r"((?:[0-9A-F]{2}:){31}[0-9A-F]{2})")


def fields(console: str) -> dict[str, str] | None:
    """The ``key=value`` fields of the timed line and the done line together; None until
    both are on the console, whole."""
    timed = _fields_of(console, TIMED)
    done = _fields_of(console, DONE)
    if timed is None or done is None:
        return None
    return {**timed, **done}


def _fields_of(console: str, marker: str) -> dict[str, str] | None:
    # Complete lines only: QEMU writes the console as the guest sends it, so the file's
    # last line may be half a line (a done line cut after its first fields).
    for line in console.split("\n")[:-1]:
        if marker in line:
            tail = line[line.index(marker) + len(marker):]
            return dict(f.split("=", 1) for f in tail.split() if "=" in f)
    return None


def certificates(console: str, role: str = "admin") -> list[tuple[str, str]]:
    """(origin, SHA-256 fingerprint) of listener ``role``'s certificate, as each start of
    the supervisor printed it on the console."""
    return certificate_line(role).findall(console)
