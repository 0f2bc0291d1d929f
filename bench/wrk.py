"""The load generator that is not ours: wrk, posting one body with ``lua/post.lua``.

``parse`` is pure (wrk's output in, a ``LoadResult`` out); ``run`` starts wrk.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from bench.load import LoadResult

log = logging.getLogger(__name__)

SCRIPT = Path(__file__).with_name("lua") / "post.lua"
MARKER = "BENCH-RESULT "


class WrkError(RuntimeError):
    """wrk is missing, failed, or printed no result line."""


@dataclass(frozen=True)
class WrkSettings:
    duration_s: int = 10
    warmup_s: int = 3
    threads: int = 1  # one wrk thread: the server keeps the other core
    timeout_s: int = 10


def parse(output: str) -> LoadResult:
    """The result line that ``post.lua`` prints at the end of a run."""
    for line in reversed(output.splitlines()):
        if line.startswith(MARKER):
            doc = json.loads(line[len(MARKER):])
            errors = doc["errors"]
            # Non-2xx answers count as errors (wrk counts them in "status"); so do
            # connect/read/write failures and timeouts.
            return LoadResult(
                requests=int(doc["requests"]) - int(errors["status"]),
                duration_s=int(doc["duration_us"]) / 1e6,
                p50_ms=int(doc["p50_us"]) / 1000.0,
                p90_ms=int(doc["p90_us"]) / 1000.0,
                p99_ms=int(doc["p99_us"]) / 1000.0,
                errors=sum(int(v) for v in errors.values()),
            )
    raise WrkError(f"wrk printed no {MARKER.strip()} line:\n{output[-2000:]}")


def _wrk(url: str, body: Path, connections: int, seconds: int, settings: WrkSettings) -> str:
    exe = shutil.which("wrk")
    if exe is None:
        raise WrkError("wrk is not installed (apt-get install wrk; 'make bench' does it)")
    cmd = [exe, f"-t{min(settings.threads, connections)}", f"-c{connections}",
           f"-d{seconds}s", f"--timeout={settings.timeout_s}s", "-s", str(SCRIPT),
           url, "--", str(body)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False,
                          timeout=seconds + settings.timeout_s + 30)
    if proc.returncode != 0:
        raise WrkError(f"wrk exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    return proc.stdout


def run(url: str, body: Path, connections: int, settings: WrkSettings,
        cpu: Callable[[], float] | None = None) -> LoadResult:
    """Warm up, then measure ``connections`` concurrent closed-loop clients for a fixed time.
    ``cpu``: reads the server's CPU seconds so far (the measured run's share is recorded)."""
    if settings.warmup_s > 0:
        _wrk(url, body, connections, settings.warmup_s, settings)
    before = cpu() if cpu else 0.0
    result = parse(_wrk(url, body, connections, settings.duration_s, settings))
    if cpu is not None:
        result = replace(result, cpu_s=cpu() - before)
    log.debug("wrk c=%d %s: %.1f req/s, p50 %.2f ms, p99 %.2f ms, %d errors", connections, url,
             result.rps, result.p50_ms, result.p99_ms, result.errors)
    return result
