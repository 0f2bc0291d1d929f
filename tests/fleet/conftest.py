"""Fixtures of the fleet tests: root, ip netns, the demo packs, a shared API key."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from llmos import apikeys

from .netfleet import DEMO, FLEET_KEY, subnet_is_free


@dataclass(frozen=True)
class FleetEnv:
    workdir: Path
    keys_file: Path  # the appliances' key file (holds only the key's hash)
    key_file: Path  # the workers' key (the key itself)
    key: str


@pytest.fixture(scope="module")
def fleet_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetEnv]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("the test fleet needs root and iproute2 (ip netns)")
    if not (DEMO / "smollm2.sealed").exists() or not FLEET_KEY.exists():
        pytest.skip("no demo packs in build/demo (make demo-packs)")
    assert subnet_is_free(), "10.231.0.0/16 is in use on this machine: the fleet would clash"
    workdir = tmp_path_factory.mktemp("fleet")
    key = apikeys.generate()
    keys_file = workdir / "api-keys"
    keys_file.write_text(apikeys.key_line("batch", key, hashed=True) + "\n")
    key_file = workdir / "worker.key"
    key_file.write_text(key + "\n")
    key_file.chmod(0o600)
    yield FleetEnv(workdir, keys_file, key_file, key)
