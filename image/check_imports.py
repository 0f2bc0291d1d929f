"""Import every module of the llmos package, inside the image, at build time.

Run by mkosi.postinst.chroot with the image's venv: a runtime dependency missing from the
image (not in pyproject's [project].dependencies, hence not in wheels.lock) or a native
library missing from the package list fails the build here, not the appliance at boot.
The build side (exporting, quantising, the demo builders: torch, onnx, transformers are not
in the image) lives in the packages listed in ``BUILD_SIDE`` and is not imported, nor is
the fleet's client side (``OFF_APPLIANCE``: Dask is not in the image); every other module
must import, whatever the error.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

#: Packages and modules that run on a build machine only (their imports need the
#: ``build`` extra); every other module of llmos runs on the appliance.
BUILD_SIDE = ("llmos.pack.llm", "llmos.pack.onnx_build", "llmos.demo")
#: The client side of a fleet (Dask workers, the HAProxy template; the ``fleet`` extra):
#: it runs next to the appliances, never on one (docs/fleet.md), so Dask is not installed.
OFF_APPLIANCE = ("llmos.fleet",)


def build_side(name: str) -> bool:
    return any(name == b or name.startswith(b + ".") for b in BUILD_SIDE + OFF_APPLIANCE)


def main() -> int:
    failures: list[str] = []

    def record(name: str) -> None:
        failures.append(f"{name}: cannot import its package")

    import llmos

    count = 0
    for info in pkgutil.walk_packages(llmos.__path__, "llmos.", onerror=record):
        if info.name.endswith(".__main__") or build_side(info.name):
            continue  # __main__ would run the command line
        count += 1
        try:
            importlib.import_module(info.name)
        except Exception as exc:  # a dependency or native library missing: all are fatal
            failures.append(f"{info.name}: {type(exc).__name__}: {exc}")
    for f in failures:
        sys.stderr.write(f"check_imports: {f}\n")
    sys.stderr.write(f"check_imports: {count} modules, {len(failures)} failed\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
