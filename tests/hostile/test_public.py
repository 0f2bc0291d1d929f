"""/health and the readiness routes show anonymous callers no file paths nor tool output."""

from __future__ import annotations

import requests

from llmos.web.api.public import health, text

from .conftest import KEY, Served


def test_paths_are_cut_to_their_file_name_and_tool_output_to_its_first_line() -> None:
    assert text("pack /usr/share/llmos/packs/a.sealed failed\nTraceback ...\n  File x") == \
        "pack a.sealed failed"
    doc = health({"reasons": ["key /var/lib/llmos/fleet-key.tpm2 missing"],
                  "key": {"provider": "tpm2", "path": "/var/lib/llmos/fleet-key.tpm2",
                          "reason": "systemd-creds: /dev/tpmrm0: no such device\ndetail"},
                  "models": {"m": {"reason": "/a/b/c.sealed: bad"}}})
    assert doc == {"reasons": ["key fleet-key.tpm2 missing"],
                   "key": {"provider": "tpm2", "reason": "systemd-creds: tpmrm0: no such device"},
                   "models": {"m": {"reason": "c.sealed: bad"}}}


def test_the_served_health_names_no_file(served: Served) -> None:
    body = requests.get(f"{served.url}/health", timeout=10).text
    assert str(KEY) not in body and str(KEY.parent) not in body, body
    assert requests.get(f"{served.url}/health", timeout=10).json()["ready"] is True
