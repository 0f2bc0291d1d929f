"""Boot tests: the built appliance image in QEMU with swtpm (marked ``boot``).

They never build the image: ``make test`` builds it first (``make image``); run alone
without one, they fail at once saying so. Each VM lives under build/test-boot/ (a qcow2
overlay on the pristine image, its own OVMF variables and swtpm state; wiped at the start
of a session, kept afterwards for the console logs).
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "image"))  # llmos_vm, stage_packs, requirements

IMAGE = ROOT / "build" / "image" / "llmos.raw"
FLEET_KEY = ROOT / "build" / "keys" / "fleet.key"
DEMO = ROOT / "build" / "demo"
# LLMOS_TEST_LAB: another directory, so that two sessions (e.g. the attack tests beside the
# others) can run at once without wiping each other's VMs.
LAB = Path(os.environ.get("LLMOS_TEST_LAB") or ROOT / "build" / "test-boot")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def image() -> Path:
    if not IMAGE.is_file():
        pytest.fail(f"no appliance image at {IMAGE.relative_to(ROOT)}: the boot tests do not "
                    "build it; run 'make image' (make test does it first)", pytrace=False)
    return IMAGE


@pytest.fixture(scope="session")
def fleet_key() -> Path:
    if not FLEET_KEY.is_file():
        pytest.fail(f"no fleet key at {FLEET_KEY.relative_to(ROOT)}: run 'make demo-packs' "
                    "(the image's packs are sealed for it)", pytrace=False)
    return FLEET_KEY


@pytest.fixture(scope="session")
def lab() -> Path:
    shutil.rmtree(LAB, ignore_errors=True)
    LAB.mkdir(parents=True)
    return LAB
