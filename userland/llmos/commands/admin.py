"""``llmos admin set-password``: set the admin console's password (read from stdin).

On a terminal it asks twice (without echo); otherwise it reads standard input (one line,
the trailing newline dropped), so ``printf %s "$PW" | llmos admin set-password`` works in
provisioning scripts. Only the scrypt hash is written, to ``<server.state_dir>/
admin-password`` (mode 0600); a running server notices and ends the open sessions.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import Any, TextIO

from llmos import config
from llmos.admin.password import DEFAULT_PARAMS, check_new_password
from llmos.admin.password_file import hash_path, set_password
from llmos.errors import ConfigError


def read_new_password(stream: TextIO, interactive: bool) -> str:
    if interactive:
        first = getpass.getpass("new admin password: ")
        if getpass.getpass("again: ") != first:
            raise ConfigError("the two passwords differ", "type the same password twice")
        return first
    line = stream.readline()
    return line[:-1] if line.endswith("\n") else line


def set_password_command(args: argparse.Namespace) -> int:
    cfg = config.load(args.config, overrides={"server.state_dir": args.state_dir})
    path = Path(cfg.values.get("admin.password_file") or hash_path(cfg["server.state_dir"]))
    password = read_new_password(sys.stdin, sys.stdin.isatty())
    check_new_password(password)
    set_password(path, password)
    p = DEFAULT_PARAMS
    print(f"admin password set: scrypt hash (N=2^{p.log2_n}, r={p.r}, p={p.p}) in {path}")
    return 0


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("admin", help="manage the admin console")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    sp: argparse.ArgumentParser = actions.add_parser(
        "set-password", help="set the admin password (read from stdin)",
        description="Set the admin console's password. Reads it from standard input "
                    "(asks twice on a terminal); stores only its scrypt hash.")
    sp.add_argument("--config", type=Path, help="configuration file (for server.state_dir)")
    sp.add_argument("--state-dir", type=Path, help="where the hash goes (server.state_dir)")
    sp.set_defaults(func=set_password_command)
