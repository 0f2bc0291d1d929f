"""``llmos config-doc``: print the settings table (the configuration reference)."""

from __future__ import annotations

import argparse
from typing import Any

from llmos import config


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("config-doc", help="print every setting")
    p.set_defaults(func=lambda _args: print(config.describe()) or 0)
