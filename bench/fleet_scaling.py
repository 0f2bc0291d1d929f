"""Does a fleet scale? N appliances serving a fixed-latency model through Dask vs one.

On a 2-core machine compute cannot scale across processes, so the appliances serve the
``sleep`` fixture (bench/sleep_appliance.py: each request sleeps ``--latency-ms``, then
answers): what remains is what the fleet adds. Each appliance runs one instance with
batch size 1, so it serves 1/latency requests per second; N appliances should give ~N x.

For each N the same items run twice, timed: through Dask (``llmos fleet`` workers, one per
appliance, ``--slots`` partitions each) and, as the floor, straight from a thread pool
calling the same appliances (same concurrency, no Dask). The difference per item is the
scheduling overhead.

    python -m bench.fleet_scaling --latency-ms 50 --items 400 --appliances 1 2 4
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(REPO / "userland"), str(REPO),
                                       e.get("PYTHONPATH", "")])
    return e


class _Proc:
    def __init__(self, cmd: list[str], log: Path) -> None:
        self.log: IO[bytes] = log.open("wb")
        self.proc = subprocess.Popen(cmd, env=_env(), stdout=self.log, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


@dataclass(frozen=True)
class Row:
    appliances: int
    items: int
    dask_s: float
    direct_s: float
    ideal_s: float
    shares: tuple[int, ...] = ()  # requests each appliance served in the Dask run

    @property
    def items_per_s(self) -> float:
        return self.items / self.dask_s

    @property
    def overhead_ms_per_item(self) -> float:
        return (self.dask_s - self.direct_s) / self.items * 1000


def _start_appliances(n: int, work: Path, latency_ms: float, keys_file: Path,
                      keyfile: Path, pack: Path) -> tuple[list[_Proc], list[str]]:
    procs, urls = [], []
    for i in range(n):
        port = _free_port()
        cfg = work / f"a{i}.toml"
        cfg.write_text(
            f'[server]\nhost = "127.0.0.1"\nport = {port}\nadmin_port = 0\n'
            f'state_dir = "{work / f"state{i}"}"\napi_keys_file = "{keys_file}"\n'
            f'[keys]\nprovider = "keyfile"\nkeyfile = "{keyfile}"\nallow_dev_key = true\n'
            '[memory]\nlock_process = false\n[devices]\nclaim = false\n'
            f'[[models]]\nname = "sleep"\npack = "{pack}"\nmax_batch_size = 1\n'
            'instances = 1\nqueue_size = 1024\n')
        procs.append(_Proc([sys.executable, "-m", "bench.sleep_appliance", "--latency-ms",
                            str(latency_ms), "--", "serve", "--config", str(cfg)],
                           work / f"a{i}.log"))
        urls.append(f"http://127.0.0.1:{port}")
    return procs, urls


def run(args: argparse.Namespace) -> list[Row]:
    from distributed import Client

    from bench import sleep_appliance
    from llmos import apikeys
    from llmos.fleet import runner
    from llmos.fleet.appliance import Appliance
    from llmos.fleet.job import Job, Kind
    from llmos.vault.kek import generate_kek
    from llmos.vault.keyfile import write_keyfile

    work = Path(tempfile.mkdtemp(prefix="fleet-scaling-"))
    kek = generate_kek()
    keyfile = work / "fleet.key"
    write_keyfile(keyfile, kek)
    pack = sleep_appliance.write_pack(work / "sleep.sealed", kek)
    key = apikeys.generate()
    (work / "api-keys").write_text(apikeys.key_line("bench", key, hashed=True) + "\n")
    (work / "worker.key").write_text(key)

    most = max(args.appliances)
    procs, urls = _start_appliances(most, work, args.latency_ms, work / "api-keys", keyfile,
                                    pack)
    sched_port = _free_port()
    address = f"tcp://127.0.0.1:{sched_port}"
    procs.append(_Proc([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host",
                        "127.0.0.1", "--port", str(sched_port), "--no-dashboard"],
                       work / "scheduler.log"))
    clients = [Appliance(u, key) for u in urls]
    items = [{"id": i, "text": f"item {i}"} for i in range(args.items)]
    rows: list[Row] = []
    try:
        for c in clients:
            assert c.wait_ready(120), f"{c.url} not ready (see {work})"
        with Client(address, timeout=60) as client:  # type: ignore[no-untyped-call]
            joined = 0
            for n in sorted(args.appliances):
                while joined < n:
                    procs.append(_Proc([sys.executable, "-m", "llmos", "fleet", "worker",
                                        "--scheduler", address, "--appliance", urls[joined],
                                        "--api-key-file", str(work / "worker.key"),
                                        "--slots", str(args.slots)],
                                       work / f"worker{joined}.log"))
                    joined += 1
                client.wait_for_workers(n, timeout=120)
                job = Job("sleep", Kind.EMBEDDINGS, work / f"out{n}.jsonl",
                          partition_size=args.partition_size)
                runner.run(client, job, items[: 4 * n * args.slots], show_progress=False)
                before = [_served(c) for c in clients[:n]]
                t0 = time.perf_counter()
                results, _ = runner.run(client, job, items, show_progress=False)
                dask_s = time.perf_counter() - t0
                shares = tuple(int(_served(c) - b) for c, b in zip(clients, before, strict=False))
                assert [r["id"] for r in results] == list(range(args.items))
                assert all(abs(r["embedding"][0] - sleep_appliance.vector(f"item {r['id']}")[0])
                           < 1e-6 for r in results)
                direct_s = _direct(clients[:n], items, args.partition_size, args.slots)
                tasks = -(-args.items // args.partition_size)
                rows.append(Row(n, args.items, dask_s, direct_s,
                                tasks * args.latency_ms / 1000 / n, shares))
                print(_row_line(rows[-1], rows[0]), flush=True)
    finally:
        for p in reversed(procs):
            p.stop()
    return rows


def _served(client: Any) -> float:
    """Requests the bench key made on this appliance so far (its /metrics)."""
    text = client.request_text("/metrics")
    m = re.search(r'^llmos_api_key_requests_total\{key="bench"\} (\S+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


def _direct(clients: list[Any], items: list[dict[str, Any]], size: int, slots: int) -> float:
    """The same partitions from a thread pool, round robin over the appliances (no Dask)."""
    parts = [items[i:i + size] for i in range(0, len(items), size)]

    def one(i: int) -> None:
        c = clients[i % len(clients)]
        c.embed("sleep", [p["text"] for p in parts[i]])

    t0 = time.perf_counter()
    with ThreadPoolExecutor(len(clients) * slots) as pool:
        list(pool.map(one, range(len(parts))))
    return time.perf_counter() - t0


HEADER = ("| appliances | items/s (Dask) | speed-up vs 1 | wall, Dask | wall, direct | ideal "
          "| Dask overhead per item | requests per appliance |\n|---|---|---|---|---|---|---|---|")


def _row_line(row: Row, first: Row) -> str:
    return (f"| {row.appliances} | {row.items_per_s:.1f} | "
            f"{row.items_per_s / first.items_per_s:.2f}x | {row.dask_s:.2f} s | "
            f"{row.direct_s:.2f} s | {row.ideal_s:.2f} s | {row.overhead_ms_per_item:.1f} ms | "
            f"{' / '.join(map(str, row.shares))} |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--latency-ms", type=float, default=50.0)
    p.add_argument("--items", type=int, default=400)
    p.add_argument("--partition-size", type=int, default=1,
                   help="items per Dask task (1: every item is its own task, the worst case)")
    p.add_argument("--slots", type=int, default=2)
    p.add_argument("--appliances", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = p.parse_args(argv)
    print(f"fixed latency {args.latency_ms:.0f} ms, {args.items} items, partition size "
          f"{args.partition_size}, {args.slots} slots per appliance\n{HEADER}", flush=True)
    rows = run(args)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
