"""The ``llmos`` command line: subcommands are registered from ``llmos.commands``.

Errors are mapped to messages and exit codes here, once: a ``LlmosError`` prints what
happened and what to do, and exits 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from llmos import __version__
from llmos.errors import LlmosError

log = logging.getLogger("llmos")

# Order is the order of `llmos --help`.
COMMANDS = ("serve", "pack", "inspect", "seal", "keygen", "enroll", "demo", "admin", "fleet",
            "osupdate_agent", "health_gate", "golden", "config_doc")


def named_command(argv: Sequence[str]) -> str | None:
    """The module of the command ``argv`` starts with, if it names one."""
    if argv and (name := argv[0].replace("-", "_")) in COMMANDS:
        return name
    return None


def build_parser(commands: Sequence[str] = COMMANDS) -> argparse.ArgumentParser:
    """The parser with ``commands`` registered (each imports its module: the supervisor
    registers ``serve`` alone, so that it starts decrypting ~2 s sooner under emulation)."""
    parser = argparse.ArgumentParser(prog="llmos", description="LLM OS: sealed model serving")
    parser.add_argument("--version", action="version", version=f"llmos {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in commands:
        # Imported when named, not at the top: ``serve`` must set its environment (BLAS
        # threads, CUDA device order) before anything imports numpy, as ``pack`` does.
        importlib.import_module(f"llmos.commands.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    argv = sys.argv[1:] if argv is None else list(argv)
    named = named_command(argv)
    args = build_parser((named,) if named else COMMANDS).parse_args(argv)
    try:
        return int(args.func(args))
    except LlmosError as exc:
        print(f"llmos {args.command}: error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"  hint: {exc.hint}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
