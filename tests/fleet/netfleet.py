"""A fleet on one machine: appliances in network namespaces, Dask, HAProxy (test harness).

Each appliance is a real ``llmos serve`` process inside its own network namespace
(``ip netns``), reached over a veth pair on a private /24 of 10.231.0.0/16 that exists only
between this host and that namespace. The namespaces and veths are created here and
removed at the end; traffic never leaves the machine.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "build" / "demo"
FLEET_KEY = REPO / "build" / "keys" / "fleet.key"
SUBNET = "10.231"
PORT = 8000
PY = sys.executable


def run(*cmd: str) -> str:
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return done.stdout


def subnet_is_free() -> bool:
    return f" {SUBNET}." not in " " + run("ip", "-4", "route", "show") + \
        run("ip", "-4", "addr", "show")


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(REPO / "userland") + os.pathsep + e.get("PYTHONPATH", "")
    e.setdefault("OPENBLAS_NUM_THREADS", "1")
    return e


@dataclass
class Netns:
    """A namespace with one veth to the host: host side .1, namespace side .2."""
    index: int
    tag: str = field(default_factory=lambda: f"{os.getpid() % 10000:04d}")

    @property
    def name(self) -> str:
        return f"llmosf{self.tag}n{self.index}"

    @property
    def host_if(self) -> str:
        return f"lf{self.tag}h{self.index}"

    @property
    def ns_ip(self) -> str:
        return f"{SUBNET}.{self.index}.2"

    def create(self) -> Netns:
        peer = f"lf{self.tag}p{self.index}"
        run("ip", "netns", "add", self.name)
        run("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", peer)
        run("ip", "link", "set", peer, "netns", self.name)
        run("ip", "addr", "add", f"{SUBNET}.{self.index}.1/24", "dev", self.host_if)
        run("ip", "link", "set", self.host_if, "up")
        for cmd in (("ip", "addr", "add", f"{self.ns_ip}/24", "dev", peer),
                    ("ip", "link", "set", peer, "up"), ("ip", "link", "set", "lo", "up")):
            run("ip", "netns", "exec", self.name, *cmd)
        return self

    def remove(self) -> None:
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


def http_json(url: str, timeout_s: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


class Process:
    def __init__(self, cmd: list[str], log: Path) -> None:
        self.log_path = log
        self._log: IO[bytes] = log.open("wb")
        self.proc = subprocess.Popen(cmd, env=env(), stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True, cwd=REPO)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.killpg(self.proc.pid, sig)

    def stop(self, timeout_s: float = 30) -> int | None:
        self.signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.proc.wait(10)
        self._log.close()
        return self.proc.returncode

    def tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


@dataclass
class ApplianceSpec:
    models: list[tuple[str, str, int]]  # (API name, sealed pack file in build/demo, max_tokens)
    keys_file: Path
    drain_s: float = 0.0


class Appliance:
    """``llmos serve`` inside a namespace of its own, listening on the namespace's address."""

    def __init__(self, index: int, spec: ApplianceSpec, workdir: Path) -> None:
        self.ns = Netns(index).create()
        self.spec, self.dir = spec, workdir / f"appliance{index}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.url = f"http://{self.ns.ns_ip}:{PORT}"
        self.process: Process | None = None
        self.starts = 0

    def config(self) -> Path:
        lines = ["[server]", f'host = "{self.ns.ns_ip}"', f"port = {PORT}",
                 'admin_host = "127.0.0.1"', "admin_port = 8001",
                 f'state_dir = "{self.dir / "state"}"', f'packs_dir = "{DEMO}"',
                 f'api_keys_file = "{self.spec.keys_file}"', f"drain_s = {self.spec.drain_s}",
                 "[keys]", 'provider = "keyfile"', f'keyfile = "{FLEET_KEY}"',
                 "allow_dev_key = true", "[memory]", "lock_process = false",
                 "[devices]", "claim = false"]
        for name, pack, max_tokens in self.spec.models:
            lines += ["[[models]]", f'name = "{name}"', f'pack = "{pack}"',
                      f"max_tokens = {max_tokens}"]
        path = self.dir / "llmos.toml"
        path.write_text("\n".join(lines) + "\n")
        return path

    def start(self) -> Appliance:
        self.starts += 1
        self.process = Process(["ip", "netns", "exec", self.ns.name, PY, "-m", "llmos", "serve",
                                "--config", str(self.config())],
                               self.dir / f"serve-{self.starts}.log")
        return self

    def ready(self) -> bool:
        return http_json(self.url + "/v2/health/ready", 2)[0] == 200

    def wait_ready(self, timeout_s: float = 240) -> Appliance:
        deadline = time.monotonic() + timeout_s
        while not self.ready():
            assert self.process is not None and self.process.alive(), self.process.tail() \
                if self.process else "not started"
            assert time.monotonic() < deadline, "not ready in time:\n" + self.process.tail()
            time.sleep(0.5)
        return self

    def kill(self) -> None:
        assert self.process is not None
        self.process.signal(signal.SIGKILL)
        self.process.proc.wait(30)

    def stop(self, timeout_s: float = 60) -> int | None:
        return self.process.stop(timeout_s) if self.process else None

    def remove(self) -> None:
        if self.process is not None and self.process.alive():
            self.process.stop(20)
        self.ns.remove()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DaskCluster:
    """A scheduler on loopback and one ``llmos fleet worker`` per appliance (off-appliance)."""

    def __init__(self, workdir: Path, key_file: Path) -> None:
        self.dir, self.key_file = workdir, key_file
        port = free_port()
        self.address = f"tcp://127.0.0.1:{port}"
        self.scheduler = Process([PY, "-m", "distributed.cli.dask_scheduler", "--host",
                                  "127.0.0.1", "--port", str(port), "--no-dashboard"],
                                 workdir / "scheduler.log")
        self.workers: dict[str, Process] = {}

    def add_worker(self, appliance: Appliance, slots: int = 2) -> Process:
        name = appliance.ns.name
        w = Process([PY, "-m", "llmos", "fleet", "worker", "--scheduler", self.address,
                     "--appliance", appliance.url, "--api-key-file", str(self.key_file),
                     "--slots", str(slots)], self.dir / f"worker-{name}.log")
        self.workers[name] = w
        return w

    def close(self) -> None:
        for w in self.workers.values():
            w.stop(20)
        self.scheduler.stop(20)
