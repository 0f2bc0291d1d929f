"""``llmos fleet``: batch jobs on Dask over many appliances, HAProxy config, API keys.

  llmos fleet run JOB.toml --scheduler tls://sched:8786   run a job (progress bar)
  llmos fleet worker --scheduler ADDR --appliance URL     one Dask worker per appliance
                     [--api-key-file F] [--ca-file PEM]   (https: the appliance's cert)
  llmos fleet haproxy A=10.0.0.2:8000 B=10.0.0.3:8000     print an HAProxy config
  llmos fleet keygen NAME                                 a new API key and its key-file line

``run`` and ``worker`` need the ``fleet`` extra (Dask); the appliance never runs them.
Dask's TLS settings (distributed.comm.tls.*) come from the Dask configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from llmos.errors import ConfigError

KEY_ENV = "LLMOS_API_KEY"


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "fleet", help="batch jobs over many appliances (Dask), HAProxy config, API keys",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    fs = p.add_subparsers(dest="fleet_command", required=True, metavar="ACTION")

    r = fs.add_parser("run", help="run a job file on a Dask cluster of appliance workers")
    r.add_argument("job", type=Path, help="TOML job file (see llmos.fleet.job)")
    r.add_argument("--scheduler", required=True, help="Dask scheduler address")
    r.add_argument("--output", type=Path, default=None, help="override the job's output")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.set_defaults(func=_run)

    w = fs.add_parser("worker", help="a Dask worker standing for one appliance")
    w.add_argument("--scheduler", required=True, help="Dask scheduler address")
    w.add_argument("--appliance", required=True, help="the appliance's API, http://HOST:PORT")
    w.add_argument("--api-key-file", type=Path, default=None,
                   help=f"file holding the appliance's API key (or ${KEY_ENV})")
    w.add_argument("--ca-file", type=Path, default=None,
                   help="an https appliance's certificate, or its CA (PEM; default: the "
                        "system's CAs)")
    w.add_argument("--slots", type=int, default=2,
                   help="partitions the appliance takes at once (default 2)")
    w.add_argument("--name", default=None, help="worker name (default: its address)")
    w.set_defaults(func=_worker)

    h = fs.add_parser("haproxy", help="print an HAProxy configuration for these appliances")
    h.add_argument("backends", nargs="+", metavar="NAME=HOST:PORT")
    h.add_argument("--bind", default="127.0.0.1:8080", help="frontend address")
    h.add_argument("--inter-ms", type=int, default=1000, help="health check interval")
    h.add_argument("--fall", type=int, default=2, help="failed checks before out")
    h.add_argument("--stats-socket", default=None, help="admin socket path")
    h.set_defaults(func=_haproxy)

    k = fs.add_parser("keygen", help="print a new API key and the line for the key file")
    k.add_argument("name", help="the key's name (labels its /metrics counter)")
    k.add_argument("--hashed", action="store_true",
                   help="give the key-file line as sha256:HEX (the file then holds no key)")
    k.set_defaults(func=_keygen)


def _api_key(path: Path | None) -> str | None:
    if path is not None:
        try:
            return path.read_text().strip() or None
        except OSError as exc:
            raise ConfigError(f"cannot read the API key file {path}: {exc.strerror}",
                              "check --api-key-file") from exc
    return os.environ.get(KEY_ENV) or None


def _run(args: argparse.Namespace) -> int:
    from distributed import Client

    from llmos.fleet import runner
    from llmos.fleet.job import load_job, with_overrides

    job = with_overrides(load_job(args.job), output=args.output)
    with Client(args.scheduler) as client:  # type: ignore[no-untyped-call]
        _, report = runner.run(client, job, show_progress=not args.no_progress)
    print(f"{report.items} results ({report.errors} refused) in {report.partitions} "
          f"partitions, {report.seconds:.1f} s -> {job.output}")
    return 0


def _worker(args: argparse.Namespace) -> int:
    from llmos.fleet.appliance import Appliance
    from llmos.fleet.worker import run_worker

    if args.slots < 1:
        raise ConfigError("--slots must be at least 1", "e.g. --slots 2")
    appliance = Appliance(args.appliance, _api_key(args.api_key_file), ca_file=args.ca_file)
    asyncio.run(run_worker(args.scheduler, appliance, slots=args.slots, name=args.name))
    return 0


def _haproxy(args: argparse.Namespace) -> int:
    from llmos.fleet.haproxy import Options, parse_backend, render

    backends = [parse_backend(text, i) for i, text in enumerate(args.backends)]
    sys.stdout.write(render(backends, Options(bind=args.bind, inter_ms=args.inter_ms,
                                              fall=args.fall, stats_socket=args.stats_socket)))
    return 0


def _keygen(args: argparse.Namespace) -> int:
    from llmos import apikeys

    key = apikeys.generate()
    line = apikeys.key_line(args.name, key, hashed=args.hashed)
    print(f"key (give it to the client; it is not stored anywhere): {key}")
    print(f"line for the llmos-api-keys credential / server.api_keys_file:\n{line}")
    return 0
