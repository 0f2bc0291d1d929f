"""`llmos fleet run` from a job file, a Dask bag as input, refused items, API keys: on
appliances serving the fixed-latency fixture (bench/sleep_appliance.py) on loopback."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dask.bag as db
import pytest
from bench import sleep_appliance
from distributed import Client

from llmos import apikeys
from llmos.fleet import runner
from llmos.fleet.appliance import Appliance as ApiClient
from llmos.fleet.appliance import Unavailable
from llmos.fleet.job import Job, Kind, resource_name
from llmos.tls import make_self_signed
from llmos.vault.kek import generate_kek
from llmos.vault.keyfile import write_keyfile

from .netfleet import REPO, Process, env, free_port

pytestmark = [pytest.mark.fleet, pytest.mark.timeout(300)]


class SleepFleet:
    def __init__(self, work: Path, n: int) -> None:
        kek = generate_kek()
        write_keyfile(work / "fleet.key", kek)
        pack = sleep_appliance.write_pack(work / "sleep.sealed", kek)
        self.key = apikeys.generate()
        (work / "api-keys").write_text(apikeys.key_line("jobs", self.key) + "\n")
        self.key_file = work / "worker.key"
        self.key_file.write_text(self.key)
        self.procs: list[Process] = []
        self.urls: list[str] = []
        self.ca_files: list[Path | None] = []
        for i in range(n):
            port = free_port()
            cfg = work / f"a{i}.toml"
            # The last appliance speaks HTTPS, with a certificate of its own.
            cert = make_self_signed(work / f"tls{i}", "localhost") if i == n - 1 else None
            tls = "" if cert is None else \
                f'tls = true\ntls_cert = "{cert.cert}"\ntls_key = "{cert.key}"\n'
            cfg.write_text(
                f'[server]\nport = {port}\nadmin_port = 0\nstate_dir = "{work / f"s{i}"}"\n'
                f'{tls}'
                f'api_keys_file = "{work / "api-keys"}"\n[keys]\nprovider = "keyfile"\n'
                f'keyfile = "{work / "fleet.key"}"\nallow_dev_key = true\n'
                '[memory]\nlock_process = false\n[devices]\nclaim = false\n'
                f'[[models]]\nname = "sleep"\npack = "{pack}"\n')
            self.procs.append(Process([sys.executable, "-m", "bench.sleep_appliance",
                                       "--latency-ms", "5", "--", "serve", "--config", str(cfg)],
                                      work / f"a{i}.log"))
            self.urls.append(f"{'http' if cert is None else 'https'}://127.0.0.1:{port}")
            self.ca_files.append(None if cert is None else cert.cert)
        sport = free_port()
        self.scheduler = f"tcp://127.0.0.1:{sport}"
        self.procs.append(Process([sys.executable, "-m", "distributed.cli.dask_scheduler",
                                   "--host", "127.0.0.1", "--port", str(sport),
                                   "--no-dashboard"], work / "scheduler.log"))
        for i, url in enumerate(self.urls):
            ca = self.ca_files[i]
            assert ApiClient(url, self.key, ca_file=ca).wait_ready(120), self.procs[i].tail()
            self.procs.append(Process([sys.executable, "-m", "llmos", "fleet", "worker",
                                       "--scheduler", self.scheduler, "--appliance", url,
                                       "--api-key-file", str(self.key_file), "--slots", "2",
                                       *(["--ca-file", str(ca)] if ca else [])],
                                      work / f"w{i}.log"))

    def close(self) -> None:
        for p in reversed(self.procs):
            p.stop(20)


@pytest.fixture(scope="module")
def sleep_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SleepFleet]:
    fleet = SleepFleet(tmp_path_factory.mktemp("sleepfleet"), 2)
    try:
        yield fleet
    finally:
        fleet.close()


def test_cli_runs_a_job_file(sleep_fleet: SleepFleet, tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text("".join(
        json.dumps({"id": f"doc-{i}", "text": f"text {i}"}) + "\n" for i in range(57))
        + json.dumps({"id": "bad", "text": 42}) + "\n")
    (tmp_path / "job.toml").write_text('[job]\nmodel = "sleep"\nkind = "embeddings"\n'
                                       'input = "in.jsonl"\noutput = "out.jsonl"\n'
                                       "partition_size = 8\n")
    done = subprocess.run([sys.executable, "-m", "llmos", "fleet", "run",
                           str(tmp_path / "job.toml"), "--scheduler", sleep_fleet.scheduler],
                          env=env(), cwd=REPO, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "58 results (1 refused)" in done.stdout
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["index"] for r in rows] == list(range(58))
    assert [r["id"] for r in rows] == [f"doc-{i}" for i in range(57)] + ["bad"]
    assert rows[3]["embedding"] == pytest.approx(sleep_appliance.vector("text 3"), abs=1e-6)
    assert "error" in rows[-1] and rows[-1]["status"] == 400  # the bad one alone is refused
    assert all("embedding" in r for r in rows[:57])


def test_a_dask_bag_as_input(sleep_fleet: SleepFleet, tmp_path: Path) -> None:
    bag = db.from_sequence([f"bag item {i}" for i in range(40)], npartitions=5)
    job = Job("sleep", Kind.EMBEDDINGS, tmp_path / "bag.jsonl")
    with Client(sleep_fleet.scheduler, timeout=30) as client:
        client.wait_for_workers(2, timeout=60)
        results, report = runner.run(client, job, bag, show_progress=False)
    assert report.partitions == 5 and report.items == 40 and report.errors == 0
    assert [r["embedding"] for r in results] == [
        pytest.approx(sleep_appliance.vector(f"bag item {i}"), abs=1e-6) for i in range(40)]


def test_workers_hold_the_key_the_appliance_wants_it(sleep_fleet: SleepFleet) -> None:
    for url, ca in zip(sleep_fleet.urls, sleep_fleet.ca_files, strict=True):
        with pytest.raises(Unavailable) as exc:
            ApiClient(url, None, ca_file=ca).embed("sleep", ["x"])
        assert exc.value.status == 401
        assert ApiClient(url, sleep_fleet.key, ca_file=ca).embed("sleep", ["x"])[0] == \
            pytest.approx(sleep_appliance.vector("x"), abs=1e-6)


def test_an_https_appliance_gets_the_key_only_once_verified(sleep_fleet: SleepFleet) -> None:
    url = sleep_fleet.urls[-1]
    assert url.startswith("https://")
    with pytest.raises(Unavailable) as exc:  # its certificate is nobody's CA's
        ApiClient(url, sleep_fleet.key, timeout_s=10).embed("sleep", ["x"])
    assert "CERTIFICATE_VERIFY_FAILED" in str(exc.value)
    served = ApiClient(url, sleep_fleet.key, ca_file=sleep_fleet.ca_files[-1])
    assert 'llmos_api_key_requests_total{key="jobs"}' in served.request_text("/metrics")
    # Its worker (given --ca-file) joined with the model it serves, as the plain one did.
    with Client(sleep_fleet.scheduler, timeout=30) as client:
        client.wait_for_workers(2, timeout=60)
        workers = client.scheduler_info()["workers"].values()
        assert sorted(w["resources"].get(resource_name("sleep"), 0) for w in workers) == [2, 2]


def test_when_a_worker_leaves_the_cluster() -> None:
    from llmos.fleet.worker import should_leave

    assert should_leave(Unavailable("refused", None), appliance_ready=False)
    assert should_leave(Unavailable("HTTP 401", 401), appliance_ready=True)  # key refused
    assert should_leave(Unavailable("HTTP 404", 404), appliance_ready=True)  # model gone
    assert not should_leave(Unavailable("HTTP 503", 503), appliance_ready=True)  # busy
