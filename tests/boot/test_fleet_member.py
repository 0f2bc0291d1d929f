"""The QEMU appliance in a fleet (issue 28), its API keys from a systemd credential (24.5).

A fresh VM ("f") boots once, provisioned with the fleet key and, as the ``llmos-api-keys``
credential, the SHA-256 line of a batch key (the appliance never holds the key itself).
While it is up: the health probes answer without a key, the models only with the key; then
``llmos fleet run`` sends a batch of embeddings through a Dask scheduler to two appliances,
this VM and an ``llmos serve`` on the host, one ``llmos fleet worker`` each. Every result is
present once, in input order, and equal to one appliance's answer for that text asked
alone; both appliances served part of the batch (their /metrics: the batch key's request
counter and the model's successful requests rose).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from distributed import Client
from llmos_vm import credentials, http
from prometheus_client.parser import text_string_to_metric_families

from llmos import apikeys
from llmos.fleet.appliance import Appliance as ApiClient
from llmos.fleet.appliance import Unavailable

from . import guest, reference
from .conftest import DEMO, ROOT, free_port
from .test_appliance import Vm

pytestmark = [pytest.mark.boot, pytest.mark.timeout(45 * 60)]

MODEL = "minilm"  # the image's embedding pack, served by both appliances
# Partitions of one item, one at a time per appliance (--slots 1): each request is a batch
# of one, so its answer is that appliance's for the text alone (the int8 pack quantises
# activations per batch, so a text's embedding depends a little on its batch). It also
# keeps each request short for a VM under TCG.
N_ITEMS, PARTITION = 60, 1
HOST_READY_S = 600.0
EXACT = 1e-6  # one appliance answers a text alone the same way every time
SAME_TEXT = 0.99  # VM vs host, same text: far above two different texts' cosine
BODY = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["hello"]}]}


def _items() -> list[dict[str, object]]:
    return [{"id": i, "text": f"Item {i}: the appliance {('serves', 'drains', 'boots')[i % 3]} "
                              f"request number {i * 7 % 101}."} for i in range(N_ITEMS)]


class Procs:
    """Processes this test starts on the host (each in its own session), stopped at the end."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.running: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = self.work / f"{name}.log"
        env = dict(os.environ, PYTHONPATH=str(ROOT / "userland"), OPENBLAS_NUM_THREADS="1")
        with log.open("wb") as out:
            proc = subprocess.Popen([sys.executable, *args], stdout=out, stderr=subprocess.STDOUT,
                                    env=env, cwd=ROOT, start_new_session=True)
        self.running.append((proc, log))
        return proc

    def tail(self, proc: subprocess.Popen[bytes]) -> str:
        log = next(path for p, path in self.running if p is proc)
        return log.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        for proc, _ in reversed(self.running):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(10)


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    p = Procs(tmp_path)
    try:
        yield p
    finally:
        p.stop()


def _host_config(work: Path, port: int, fleet_key: Path, keys_file: Path) -> Path:
    path = work / "host.toml"
    path.write_text(
        f'[server]\nhost = "127.0.0.1"\nport = {port}\nadmin_port = 0\n'
        f'state_dir = "{work / "host-state"}"\npacks_dir = "{DEMO}"\n'
        f'api_keys_file = "{keys_file}"\n'
        f'[keys]\nprovider = "keyfile"\nkeyfile = "{fleet_key}"\nallow_dev_key = true\n'
        '[memory]\nlock_process = false\n[devices]\nclaim = false\n'
        f'[[models]]\nname = "{MODEL}"\npack = "{MODEL}.sealed"\n')
    return path


def _counts(api: ApiClient) -> tuple[float, float]:
    """(requests counted for the batch key, successful inference requests of MODEL) in this
    appliance's /metrics."""
    key = served = 0.0
    for family in text_string_to_metric_families(api.request_text("/metrics")):
        for s in family.samples:
            if s.name == "llmos_api_key_requests_total" and s.labels.get("key") == "batch":
                key += s.value
            elif s.name == "nv_inference_request_success" and s.labels.get("model") == MODEL:
                served += s.value
    return key, served


def _assert_probes_open_models_keyed(api: str, key: str) -> None:
    for path in ("/health", "/v2/health/live", "/v2/health/ready"):
        reply = http.request(api + path)
        assert reply is not None and reply.status == 200, (path, reply)
    refused = http.request(f"{api}/v2/models/{MODEL}/infer", BODY)
    assert refused is not None and refused.status == 401, refused
    assert refused.json()["error"]["code"] == "invalid_api_key"
    with pytest.raises(Unavailable) as wrong:
        ApiClient(api, apikeys.generate()).embed(MODEL, ["hello"])
    assert wrong.value.status == 401
    assert len(ApiClient(api, key).embed(MODEL, ["hello"])[0]) == 384


def test_keyed_appliance_serves_its_share_of_a_dask_batch(
        lab: Path, image: Path, fleet_key: Path, tmp_path: Path, procs: Procs) -> None:
    key = apikeys.generate()
    key_line = apikeys.key_line("batch", key, hashed=True)
    keys_file, key_file = tmp_path / "api-keys", tmp_path / "worker.key"
    keys_file.write_text(key_line + "\n")
    key_file.write_text(key + "\n")
    host_port = free_port()
    host = procs.start("host", "-m", "llmos", "serve", "--config",
                       str(_host_config(tmp_path, host_port, fleet_key, keys_file)))
    host_api = ApiClient(f"http://127.0.0.1:{host_port}", key)
    sched_port = free_port()
    scheduler = f"tcp://127.0.0.1:{sched_port}"
    procs.start("scheduler", "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                "--port", str(sched_port), "--no-dashboard")
    items = _items()
    (tmp_path / "items.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items))
    job = tmp_path / "job.toml"
    job.write_text(f'[job]\nmodel = "{MODEL}"\nkind = "embeddings"\ninput = "items.jsonl"\n'
                   f'output = "out.jsonl"\npartition_size = {PARTITION}\n')

    vm = Vm(lab / "f", image)
    smbios = (credentials.credential("llmos-provision-key", fleet_key.read_bytes()),
              credentials.credential("llmos-api-keys", key_line.encode()))
    with vm.boot("1-fleet", *smbios) as boot:
        health = guest.settled_health(boot, vm.api)  # /health needs no key
        assert health["status"] == "ready", health["reasons"]
        _assert_probes_open_models_keyed(vm.api, key)
        assert host_api.wait_ready(HOST_READY_S), procs.tail(host)
        vm_api = ApiClient(vm.api, key)

        for name, url in (("worker-vm", vm.api), ("worker-host", host_api.url)):
            procs.start(name, "-m", "llmos", "fleet", "worker", "--scheduler", scheduler,
                        "--appliance", url, "--api-key-file", str(key_file), "--slots", "1")
        with Client(scheduler, timeout=60) as client:
            client.wait_for_workers(2, timeout=300)
        before = _counts(vm_api), _counts(host_api)
        run = subprocess.run([sys.executable, "-m", "llmos", "fleet", "run", str(job),
                              "--scheduler", scheduler, "--no-progress"],
                             capture_output=True, text=True, timeout=1200, cwd=ROOT,
                             env=dict(os.environ, PYTHONPATH=str(ROOT / "userland")))
        assert run.returncode == 0, run.stderr[-3000:]
        after = _counts(vm_api), _counts(host_api)
        # Each appliance's own answer for each text, asked alone (as the batch asked it).
        texts = [str(i["text"]) for i in items]
        alone = {who: np.array([api.embed(MODEL, [t])[0] for t in texts], dtype=np.float32)
                 for who, api in (("vm", vm_api), ("host", host_api))}
    assert boot.clean_shutdown, "the guest did not power off on the ACPI request"

    results = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["id"] for r in results] == list(range(N_ITEMS))
    assert not [r for r in results if "error" in r]
    for who, (b, a) in (("the VM", (before[0], after[0])), ("the host", (before[1], after[1]))):
        assert a[0] > b[0], f"{who} counted no request of the batch key: {b} -> {a}"
        assert a[1] > b[1], f"{who} served none of the batch: {b} -> {a}"
    # Every result is one appliance's answer for that text. The two differ a little: the
    # guest's emulated CPU may run other int8 kernels (test_appliance holds the VM to the
    # reference); they must still be the same model's embedding of the same text.
    served = np.array([r["embedding"] for r in results], dtype=np.float32)
    from_vm = np.abs(served - alone["vm"]).max(axis=1) <= EXACT
    from_host = np.abs(served - alone["host"]).max(axis=1) <= EXACT
    assert np.all(from_vm | from_host), np.where(~(from_vm | from_host))[0]
    agreement = reference.cosine(alone["vm"], alone["host"])
    assert np.all(agreement > SAME_TEXT), agreement.min()
    print(f"fleet with a QEMU member: {N_ITEMS} embeddings; requests served: VM "
          f"{after[0][1] - before[0][1]:.0f}, host {after[1][1] - before[1][1]:.0f}; "
          f"results equal to the VM's answer {int(from_vm.sum())}, the host's "
          f"{int(from_host.sum())}; VM vs host cosine >= {agreement.min():.5f}; "
          f"{run.stdout.strip()}")
