"""A real ``llmos serve`` process for the memory tests: its port, HTTP calls, /proc counters."""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from llmos.hw.meminfo import locked_bytes, parse_kv

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@dataclass(frozen=True)
class Memory:
    """One reading of /proc/<pid>/status. Hugetlb pages are neither in VmRSS nor in
    VmLck, yet resident and never swapped: they count in both sums here."""

    rss: int
    locked: int
    hugetlb: int

    @property
    def resident(self) -> int:
        return self.rss + self.hugetlb

    @property
    def pinned(self) -> int:
        return self.locked + self.hugetlb


@dataclass(frozen=True)
class Reload:
    """A loaded model unloaded and loaded again, with the process's memory at each step."""

    loaded: Memory
    unloaded: Memory
    reloaded: Memory
    status: dict[str, Any]  # the model's status after the load

    @property
    def plain(self) -> int:
        return int(self.status["size_plain"])

    @property
    def held_ratio(self) -> float:
        """Resident memory the model gave back on unload, per plaintext byte."""
        return (self.loaded.resident - self.unloaded.resident) / self.plain

    @property
    def regrown_ratio(self) -> float:
        """Resident memory loading it again took, per plaintext byte."""
        return (self.reloaded.resident - self.unloaded.resident) / self.plain


class Serve:
    """``llmos serve --config CONFIG`` with its own HOME and TMPDIR; stderr collected.

    ``prefix`` runs it under another command (``setpriv`` dropping a capability, say);
    ``memlock`` lowers its RLIMIT_MEMLOCK (bytes).
    """

    def __init__(self, config: Path, root: Path, prefix: Sequence[str] = (),
                 memlock: int | None = None) -> None:
        for d in ("home", "tmp"):
            (root / d).mkdir(exist_ok=True)
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("LLMOS_")},
               "HOME": str(root / "home"), "TMPDIR": str(root / "tmp"),
               "PYTHONUNBUFFERED": "1"}
        def limit() -> None:
            if memlock is not None:
                resource.setrlimit(resource.RLIMIT_MEMLOCK, (memlock, memlock))

        self.proc = subprocess.Popen([*prefix, sys.executable, "-m", "llmos", "serve",
                                      "--config", str(config)], env=env, cwd=root,
                                     stderr=subprocess.PIPE, text=True, preexec_fn=limit)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.base = f"http://127.0.0.1:{self._port()}"

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def _port(self, timeout_s: float = 60) -> int:
        deadline = time.monotonic() + timeout_s
        pattern = re.compile(r"api listening on http://[\d.]+:(\d+)")
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if m := pattern.search(line):
                    return int(m.group(1))
            assert self.proc.poll() is None, "".join(self.lines)
            time.sleep(0.05)
        raise AssertionError("no listening line:\n" + "".join(self.lines))

    def call(self, method: str, path: str, doc: Any = None) -> tuple[int, Any]:
        data = None if doc is None else json.dumps(doc).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def text(self, path: str) -> str:
        with urllib.request.urlopen(self.base + path, timeout=30) as r:
            return str(r.read().decode())

    def metrics(self) -> Samples:
        """/metrics now: (name, sorted label pairs) -> value."""
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for fam in text_string_to_metric_families(self.text("/metrics"))
                for s in fam.samples}

    def settled(self, timeout_s: float = 300) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            _, doc = self.call("GET", "/health")
            if doc["status"] != "starting":
                return dict(doc)
            assert time.monotonic() < deadline, doc
            assert self.proc.poll() is None, "".join(self.lines)
            time.sleep(0.1)

    def memory(self) -> Memory:
        status = parse_kv(Path(f"/proc/{self.proc.pid}/status").read_text())
        locked = locked_bytes(Path(f"/proc/{self.proc.pid}/smaps_rollup"),
                              Path(f"/proc/{self.proc.pid}/status"))
        return Memory(status["VmRSS"], locked, status.get("HugetlbPages", 0))

    def reload(self, model: str) -> Reload:
        """Unload ``model`` (loaded now) and load it again, reading memory at each step."""
        loaded = self.memory()
        status, doc = self.call("POST", f"/v2/repository/models/{model}/unload")
        assert status == 200 and doc["state"] == "UNLOADED" and doc["memory_bytes"] == 0, doc
        unloaded = self.memory()
        status, doc = self.call("POST", f"/v2/repository/models/{model}/load")
        assert status == 200 and doc["state"] == "READY", doc
        return Reload(loaded, unloaded, self.memory(), dict(doc))

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        finally:
            self._reader.join(5)
            if self.proc.stderr is not None:
                self.proc.stderr.close()
