"""The image's Python requirements, read from pyproject.toml (one source of truth).

    python image/wheel_pins.py runtime [--profile nvidia]
        [project].dependencies as requirement lines; the nvidia profile swaps onnxruntime
        for onnxruntime-gpu with its CUDA and cuDNN wheels
    python image/wheel_pins.py check LOCKFILE [--profile nvidia]
        exit 1 unless every runtime requirement is pinned in LOCKFILE
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
GPU_SWAP = {"onnxruntime": "onnxruntime-gpu[cuda,cudnn]"}
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def name_of(requirement: str) -> str:
    match = _NAME.match(requirement)
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return normalize(match.group(1))


def project(path: Path = PYPROJECT) -> Mapping[str, Any]:
    with path.open("rb") as f:
        table: Mapping[str, Any] = tomllib.load(f)["project"]
    return table


def runtime(profile: str, proj: Mapping[str, Any]) -> list[str]:
    deps = [str(d) for d in proj["dependencies"]]
    if profile != "nvidia":
        return deps
    return [GPU_SWAP[name_of(d)] + d[len(name_of(d)):] if name_of(d) in GPU_SWAP else d
            for d in deps]


def pinned(lock_text: str) -> set[str]:
    return {name_of(line) for line in lock_text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("runtime")
    r.add_argument("--profile", default="default")
    c = sub.add_parser("check")
    c.add_argument("lock", type=Path)
    c.add_argument("--profile", default="default")
    args = p.parse_args(argv)
    proj = project()
    if args.command == "runtime":
        sys.stdout.write("".join(f"{d}\n" for d in runtime(args.profile, proj)))
    elif args.command == "check":
        missing = sorted({name_of(d) for d in runtime(args.profile, proj)}
                         - pinned(args.lock.read_text()))
        if missing:
            sys.stderr.write(f"{args.lock} pins no wheel for {missing} (pyproject.toml's "
                             f"dependencies changed): run image/lock-wheels.sh "
                             f"{args.profile} and commit the result\n")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
