"""``llmos health-gate``: decide whether a newly installed version may be kept.

Run by ``llmos-health-gate.service`` (after ``llmos.service``) on a boot that counts its
tries: waits for the supervisor to be READY on the local API, then sends every golden
request (``llmos.osupdate.golden``) and checks the answers. Exit 0: passed (the unit then
lets the boot be marked good); 1: failed, with the reason on the last line.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from llmos import apikeys, config, tls
from llmos.osupdate import golden
from llmos.osupdate.client import JsonClient
from llmos.osupdate.gate import Gate

DEFAULT_CONFIG = Path("/etc/llmos/config.toml")
DEFAULT_GOLDEN = Path("/usr/lib/llmos/golden.json")
LOOPBACK = "127.0.0.1"


def say(line: str) -> None:
    print(line, flush=True)


def command(args: argparse.Namespace) -> int:
    cfg = config.load(args.config)
    try:
        checks = golden.loads(args.golden.read_text())
    except (OSError, ValueError) as exc:
        say(f"health-gate: FAILED: cannot use the golden file {args.golden}: {exc}")
        return 1
    required, key = apikeys.plain_key(cfg["server.api_keys_file"], os.environ)
    if required and key is None:
        say("health-gate: FAILED: the API needs a key and every configured key is a "
            "sha256 digest; give the gate one 'NAME: KEY' line in the "
            f"{apikeys.CREDENTIAL} credential")
        return 1
    scheme = "https" if tls.speaks_https(cfg, os.environ, "api") else "http"
    client = JsonClient(f"{scheme}://{LOOPBACK}:{cfg['server.port']}", key)
    say(f"health-gate: {len(checks)} golden checks against {client.base_url}, "
        f"timeout {args.timeout:.0f} s")
    return Gate(client, checks, args.timeout, time.monotonic, time.sleep, say)()


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "health-gate", help="check a new OS version: READY, and golden requests answered",
        description="Wait until the local supervisor is READY, then send each golden "
                    "request and check the answer. Exit 0 when all pass, 1 otherwise.")
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                   help=f"the supervisor's configuration (default {DEFAULT_CONFIG})")
    p.add_argument("--golden", type=Path, default=DEFAULT_GOLDEN,
                   help=f"the golden requests (default {DEFAULT_GOLDEN})")
    p.add_argument("--timeout", type=float, default=600.0,
                   help="seconds to wait for READY and the answers (default 600)")
    p.set_defaults(func=command)
