"""llmos.service never leaves the supervisor failed (a failure reboots the machine) and lets
it hold the connections its caps allow; the supervisor lifts its own soft descriptor limit
to what the caps need."""

from __future__ import annotations

import configparser
import os
import resource
import subprocess
import sys
from pathlib import Path

from llmos import config
from llmos.web.connections import descriptors_needed, nofile_target

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "image/mkosi.extra/usr/lib/systemd/system/llmos.service"
INF = resource.RLIM_INFINITY


def _unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    return parser


def test_a_failed_supervisor_reboots_the_machine_instead_of_restarting() -> None:
    """Once released, the key cannot be released again in the same boot (PCR 11 is
    extended, docs/security.md): a restart would come up without it. A failure reboots,
    and the next boot is measured afresh."""
    unit = _unit()
    assert unit["Service"]["Restart"] == "no"
    assert unit["Unit"]["FailureAction"] == "reboot"
    # The watchdog's kill is such a failure: room for a starved host (TCG, 2 shared cores).
    assert unit["Service"]["WatchdogSec"] == "90s"


def test_limit_nofile_covers_both_listeners_at_their_cap() -> None:
    default = config.load(environ={})["server.max_connections"]
    assert int(_unit()["Service"]["LimitNOFILE"]) >= descriptors_needed(default, 2)


def test_nofile_target() -> None:
    assert nofile_target(1024, 4096, 2304) == 2304
    assert nofile_target(1024, 2000, 2304) == 2000  # as far as the hard limit allows
    assert nofile_target(8192, 8192, 2304) == 8192  # never lowered
    assert nofile_target(1024, INF, 5000) == 5000
    assert nofile_target(INF, INF, 5000) == INF


def test_the_server_lifts_its_soft_limit_at_start() -> None:
    """A real Server start in a child whose soft limit is low: afterwards it is what two
    listeners of 300 connections need."""
    code = """
import asyncio, resource
from aiohttp import web
from llmos.web.server import Listener, Server
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (128, hard))
async def main():
    s = Server([Listener("api", web.Application(), "127.0.0.1", 0),
                Listener("admin", web.Application(), "127.0.0.1", 0)], max_connections=300)
    await s.start()
    print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    await s.stop()
asyncio.run(main())
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "userland")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=60, check=True).stdout
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    assert int(out.strip()) == nofile_target(128, hard, descriptors_needed(300, 2))
    assert int(out.strip()) > 128
