"""The appliance's inference API over HTTPS (issue 24.5): the operator provisions a
certificate as the ``llmos-api-tls-cert``/``-key`` credentials (the image's configuration
says ``server.tls = "provisioned"``); the API then speaks HTTPS only, with that
certificate, and the stock ``openai`` client that trusts it gets its embeddings. Without
the credentials (every other boot test) the API speaks plain HTTP.

One boot of a clone of the enrolled machine: the TPM alone releases the key, as on any
later boot.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from llmos_vm import credentials, http, report

from llmos.tls import make_self_signed

from . import guest
from .conftest import EMBEDDING_MODEL, TEXTS, FirstBoot, clone

pytestmark = pytest.mark.boot

def test_a_provisioned_certificate_makes_the_api_https_only(first_boot: FirstBoot,
                                                            lab: Path) -> None:
    # The operator's certificate: for 127.0.0.1 (QEMU forwards the guest's port there).
    given = make_self_signed(lab / "api-tls-operator", "localhost")
    vm = clone(lab / "api-tls", first_boot.enrolled)
    smbios = (credentials.credential("llmos-api-tls-cert", given.cert.read_bytes()),
              credentials.credential("llmos-api-tls-key", given.key.read_bytes()))
    https_api = f"https://127.0.0.1:{vm.api_port}"
    with vm.boot("api-tls", *smbios) as boot:
        health = guest.settled_health(boot, https_api, pin=given.fingerprint)
        plain = http.request(f"{vm.api}/health", timeout_s=10)
        served = guest.openai_embeddings(https_api, EMBEDDING_MODEL, TEXTS,
                                         verify=str(given.cert))
        console = boot.console()
    assert health["status"] == "ready", health["reasons"]
    assert report.certificates(console, "api") == [("credential", given.fingerprint)], \
        "the API did not say it serves the provisioned certificate"
    assert plain is None or plain.status >= 400, "the API still answered plain HTTP"
    assert served.shape[0] == len(TEXTS)
    assert np.allclose(np.linalg.norm(served, axis=1), 1.0, atol=1e-3)
