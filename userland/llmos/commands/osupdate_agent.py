"""``llmos osupdate-agent``: carry out the OS update request the admin page dropped.

Run as root by ``llmos-update.service`` (started by ``llmos-update.path`` when the request
file appears); see ``llmos.osupdate.agent`` and docs/os-updates.md.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from llmos.osupdate.agent import Agent, Paths
from llmos.osupdate.system import image_version, run

DEFAULT_REQUEST = Path("/run/llmos/os-update/request")
DEFAULT_STATE = Path("/run/llmos-update")
DEFAULT_TEMPLATES = Path("/usr/lib/llmos/sysupdate.d")


def command(args: argparse.Namespace) -> int:
    agent = Agent(Paths(args.request, args.state_dir, args.templates), run, image_version(),
                  time.time, lambda line: print(line, flush=True))
    return agent()


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "osupdate-agent", help="carry out an OS update request (run by llmos-update.service)",
        description="Read and delete the request file ({\"action\": \"update\", \"source\": "
                    "URL-or-dir} or {\"action\": \"reboot\"}), run systemd-sysupdate or "
                    "systemctl reboot, and write STATE_DIR/status.json. Exit 0 when done as "
                    "asked, 1 when not (the status says why).")
    p.add_argument("--request", type=Path, default=DEFAULT_REQUEST,
                   help=f"the request file (default {DEFAULT_REQUEST})")
    p.add_argument("--state-dir", type=Path, default=DEFAULT_STATE,
                   help="where status.json and the rendered sysupdate.d/ go "
                        f"(default {DEFAULT_STATE})")
    p.add_argument("--templates", type=Path, default=DEFAULT_TEMPLATES,
                   help=f"the *.transfer.in templates (default {DEFAULT_TEMPLATES})")
    p.set_defaults(func=command)
