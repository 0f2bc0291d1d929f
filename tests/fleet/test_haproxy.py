"""Issue 28's online check: HAProxy (the rendered template) in front of two `llmos serve`
appliances in their own namespaces; a steady client load sees zero failed requests while
one appliance is drained (SIGTERM: not-ready first, then in-flight work finishes) and
restarted."""

from __future__ import annotations

import json
import shutil
import signal
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from llmos.fleet.haproxy import Backend, Options, render

from .conftest import FleetEnv
from .netfleet import Appliance, ApplianceSpec, Process, free_port

pytestmark = [pytest.mark.fleet, pytest.mark.timeout(600)]

OPTIONS = dict(inter_ms=500, fastinter_ms=200, fall=2, rise=2, check_timeout_ms=500)


class Load:
    """``clients`` threads sending embedding requests through HAProxy until stopped."""

    def __init__(self, url: str, key: str, clients: int = 4) -> None:
        self.url, self.key = url, key
        self.outcomes: Counter[str] = Counter()
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(clients)
        self._futures = [self._pool.submit(self._client, c) for c in range(clients)]

    def _client(self, c: int) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2],
                                "data": [f"client {c} request {n}", "a steady load"]}]}
            req = urllib.request.Request(
                self.url + "/v2/models/minilm/infer", data=json.dumps(body).encode(),
                headers={"Authorization": f"Bearer {self.key}",
                         "Content-Type": "application/json"}, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=60) as resp:
                    doc = json.loads(resp.read())
                    assert doc["outputs"][0]["shape"] == [2, 384]
                    self.outcomes["ok"] += 1
            except (urllib.error.URLError, OSError, AssertionError, KeyError) as exc:
                self.outcomes["failed"] += 1
                self.failures.append(f"{time.monotonic():.2f} {exc!r}")

    def count(self) -> int:
        return self.outcomes["ok"]

    def stop(self) -> None:
        self._stop.set()
        for f in self._futures:
            f.result()
        self._pool.shutdown()


def wait_requests(load: Load, more: int, timeout_s: float = 120) -> None:
    target, deadline = load.count() + more, time.monotonic() + timeout_s
    while load.count() < target:
        assert time.monotonic() < deadline, f"load stalled: {load.outcomes}"
        time.sleep(0.1)


@pytest.fixture
def pair(fleet_env: FleetEnv) -> Iterator[tuple[Appliance, Appliance]]:
    opts = Options(**OPTIONS)
    spec = ApplianceSpec([("minilm", "minilm-fp32.sealed", 16)], fleet_env.keys_file,
                         drain_s=round(opts.detection_s + 1.0, 1))
    apps = [Appliance(i, spec, fleet_env.workdir) for i in (11, 12)]
    try:
        for a in apps:
            a.start()
        for a in apps:
            a.wait_ready()
        yield apps[0], apps[1]
    finally:
        for a in apps:
            a.remove()


def test_drain_and_restart_behind_haproxy_loses_nothing(pair: tuple[Appliance, Appliance],
                                                        fleet_env: FleetEnv) -> None:
    assert shutil.which("haproxy"), "haproxy is not installed (image/host-deps.sh)"
    a1, a2 = pair
    port = free_port()
    cfg = fleet_env.workdir / "haproxy.cfg"
    cfg.write_text(render([Backend("a1", f"{a1.ns.ns_ip}:8000"),
                           Backend("a2", f"{a2.ns.ns_ip}:8000")],
                          Options(bind=f"127.0.0.1:{port}", **OPTIONS)))
    haproxy = Process(["haproxy", "-db", "-f", str(cfg)], fleet_env.workdir / "haproxy.log")
    try:
        time.sleep(2.0)  # both servers pass their first checks (rise)
        assert haproxy.alive(), haproxy.tail()
        load = Load(f"http://127.0.0.1:{port}", fleet_env.key)
        try:
            wait_requests(load, 50)
            assert a1.process is not None
            a1.process.signal(signal.SIGTERM)  # systemctl stop: drain, then exit
            stopped = time.monotonic()
            assert a1.process.proc.wait(60) == 0, a1.process.tail()
            drained_s = time.monotonic() - stopped
            served_during = load.count()
            a1.start().wait_ready()
            time.sleep(2.0)  # HAProxy sees it up again (rise x inter)
            before = load.count()
            wait_requests(load, 100)
        finally:
            load.stop()
        log = a1.process.tail(20000)  # the restarted process's log
    finally:
        haproxy.stop()
    # HAProxy took a1 out because its readiness said so (400), not because its port closed.
    assert "a1 is DOWN, reason: Layer7 wrong status, code: 400" in haproxy.tail(20000), \
        haproxy.tail()
    first_log = (a1.dir / "serve-1.log").read_text()
    assert "draining: not ready" in first_log and "drained in" in first_log, first_log[-3000:]
    assert load.outcomes["failed"] == 0, load.failures[:10]
    assert load.count() > before > served_during > 50
    assert drained_s >= OPTIONS["inter_ms"] / 1000  # it stayed up while being taken out
    assert "listening on" in log
