"""Import every module of the llmos package, inside the image, at build time.

Run by mkosi.postinst.chroot with the image's venv: a runtime dependency missing from the
image (not in pyproject's [project].dependencies, hence not in wheels.lock) or a native
library missing from the package list fails the build here, not the appliance at boot.
Modules that need an optional dependency (the build tools, torch) may fail to import: the
names of those dependencies are the arguments.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from collections.abc import Sequence


def main(optional: Sequence[str]) -> int:
    allowed = set(optional)
    failures: list[str] = []

    def record(name: str) -> None:
        failures.append(f"{name}: cannot import its package")

    import llmos

    count = 0
    for info in pkgutil.walk_packages(llmos.__path__, "llmos.", onerror=record):
        if info.name.endswith(".__main__"):
            continue  # importing it would run the command line
        count += 1
        try:
            importlib.import_module(info.name)
        except ModuleNotFoundError as exc:
            if (exc.name or "").split(".")[0] not in allowed:
                failures.append(f"{info.name}: {exc}")
        except Exception as exc:  # a native library missing, or worse: all are fatal here
            failures.append(f"{info.name}: {type(exc).__name__}: {exc}")
    for f in failures:
        sys.stderr.write(f"check_imports: {f}\n")
    sys.stderr.write(f"check_imports: {count} modules, {len(failures)} failed\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
