"""Fixtures of the vault tests: packs to seal, fleet keys, and real software TPMs."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from llmos.vault.keys import Kek, generate_kek

from .packs import Pack, random_pack
from .swtpm import Swtpm, missing_tools


@pytest.fixture
def kek() -> Kek:
    return generate_kek()


@pytest.fixture
def pack() -> Pack:
    return random_pack(3000)


@pytest.fixture
def new_swtpm() -> Iterator[Callable[[], Swtpm]]:
    """Starts fresh software TPMs on demand (each one is another TPM); stops them after,
    with ``tpm2_shutdown -c`` first so no lockout accumulates."""
    missing = missing_tools(("systemd-creds",))
    if missing:
        pytest.skip(f"software TPM tools not installed: {', '.join(missing)}")
    started: list[Swtpm] = []

    def start() -> Swtpm:
        started.append(Swtpm().start())
        return started[-1]

    yield start
    for tpm in started:
        tpm.stop()


@pytest.fixture
def swtpm(new_swtpm: Callable[[], Swtpm]) -> Swtpm:
    return new_swtpm()
