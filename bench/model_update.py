"""A model update under load: ``llmos serve`` answers a steady stream of v2 requests while
a new version of the model is uploaded on the admin page, loads beside the old one, takes
over and the old one is unloaded. How many requests failed, which version answered each,
and what the switch cost in latency and throughput.

    PYTHONPATH=userland python -m bench.model_update [--clients 4] [--plain PACK]

``--plain``: the plain MiniLM pack (default ``build/demo/minilm.llmpack``, ``make
demo-packs``); it is sealed twice here, as version 1 (served at start) and version 2 (the
update), for a fleet key of this run's own. Writes ``bench/results/model_update.json``.
The scenario's parts (``Server``, ``Admin``, ``Load``) are what
``tests/serving/test_update_under_load.py`` drives too.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import requests

from bench.load import summarize

ROOT = Path(__file__).resolve().parents[1]
DEMO_PLAIN = ROOT / "build" / "demo" / "minilm.llmpack"
PASSWORD = "bench-update-password"
TEXTS = [b"The appliance serves a new model version.", b"No request may fail meanwhile."]


def seal_versions(plain: Path, out: Path, versions: tuple[str, ...] = ("1", "2")
                  ) -> tuple[Path, dict[str, Path]]:
    """The plain pack sealed once per version for a fresh fleet key: (keyfile, packs)."""
    from llmos.pack.container import read_pack
    from llmos.vault.kek import generate_kek
    from llmos.vault.keyfile import write_keyfile
    from llmos.vault.sealed import seal

    kek = generate_kek()
    keyfile = out / "fleet.key"
    write_keyfile(keyfile, kek)
    manifest, compressed = read_pack(plain)
    packs = {}
    for version in versions:
        path = out / f"{manifest.name}-{version}.sealed"
        path.write_bytes(seal(dataclasses.replace(manifest, version=version), compressed, kek))
        packs[version] = path
    return keyfile, packs


def write_config(root: Path, keyfile: Path, name: str, pack: Path) -> Path:
    """A server on free ports with one model, the admin password set."""
    from llmos.admin.password_file import set_password

    password_file = root / "admin-password"
    set_password(password_file, PASSWORD)
    path = root / "llmos.toml"
    path.write_text(f"""[server]
host = "127.0.0.1"
port = 0
admin_port = 0
state_dir = "{root / 'state'}"
packs_dir = "{root}"
[keys]
provider = "keyfile"
keyfile = "{keyfile}"
allow_dev_key = true
[admin]
password_file = "{password_file}"
generate_password = false
[[models]]
name = "{name}"
pack = "{pack}"
""")
    return path


class Server:
    """A running ``llmos serve``; its log lines are collected on a thread. Also the
    process tests/serving/test_process.py checks as systemd runs it."""

    def __init__(self, config: Path, env: dict[str, str] | None = None,
                 cwd: Path | None = None, extra: Sequence[str] = ()) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "llmos", "serve", "--config",
                                      str(config), *extra], env=env, cwd=cwd,
                                     stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def port(self, role: str, timeout_s: float = 120) -> int:
        deadline = time.monotonic() + timeout_s
        pattern = re.compile(rf"{role} listening on http://[\d.]+:(\d+)")
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if m := pattern.search(line):
                    return int(m.group(1))
            if self.proc.poll() is not None:
                raise RuntimeError("llmos serve exited:\n" + "".join(self.lines))
            time.sleep(0.05)
        raise RuntimeError("no listening line:\n" + "".join(self.lines))

    def health(self) -> dict[str, Any]:
        doc: dict[str, Any] = requests.get(f"http://127.0.0.1:{self.port('api')}/health",
                                           timeout=10).json()
        return doc

    def wait_ready(self, timeout_s: float = 180) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            doc = self.health()
            if doc["status"] != "starting":
                return doc
            time.sleep(0.1)
        raise RuntimeError("still starting:\n" + "".join(self.lines))

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.wait(60)
        finally:
            self._reader.join(5)


class Admin:
    """The admin page, used as a browser would: log in, then upload with the CSRF token."""

    def __init__(self, port: int, password: str = PASSWORD) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.session = requests.Session()
        form = self.session.get(f"{self.base}/login", timeout=10)
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert token, "no CSRF field on the login page"
        resp = self.session.post(f"{self.base}/login", allow_redirects=False, timeout=10,
                                 data={"password": password, "csrf_token": token.group(1),
                                       "next": "/models"})
        assert resp.status_code == 303, resp.text
        page = self.session.get(f"{self.base}/models", timeout=10)
        meta = re.search(r'<meta name="csrf-token" content="([^"]+)">', page.text)
        assert meta, "no CSRF token on the models page"
        self.token = meta.group(1)

    def upload(self, pack: Path) -> requests.Response:
        with pack.open("rb") as f:
            return self.session.post(f"{self.base}/api/models", timeout=600,
                                     headers={"X-CSRF-Token": self.token},
                                     files={"pack": (pack.name, f, "application/octet-stream")})


@dataclass(frozen=True)
class Outcome:
    """One request: when it was sent and answered (time.time()), and how."""

    sent: float
    done: float
    status: int  # HTTP status; 0: no answer (connection refused or reset)
    version: str  # model_version of the answer ("" when it failed)
    error: str = ""


class Load:
    """``clients`` threads, each sending one v2 request after the other (closed loop) with
    the stock ``tritonclient`` HTTP client, until stopped."""

    def __init__(self, port: int, model: str, clients: int = 4) -> None:
        self.url, self.model = f"127.0.0.1:{port}", model
        self.outcomes: list[Outcome] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, daemon=True)
                         for _ in range(clients)]

    def _client(self) -> None:
        import tritonclient.http as triton
        from tritonclient.utils import InferenceServerException

        client = triton.InferenceServerClient(self.url, network_timeout=60)
        text = triton.InferInput("text", [len(TEXTS)], "BYTES")
        text.set_data_from_numpy(np.array(TEXTS, dtype=object), binary_data=False)
        wanted = [triton.InferRequestedOutput("embedding", binary_data=False)]
        while not self._stop.is_set():
            sent = time.time()
            try:
                result = client.infer(self.model, [text], outputs=wanted)
                vectors = result.as_numpy("embedding")
                assert vectors is not None and vectors.shape == (len(TEXTS), 384)
                outcome = Outcome(sent, time.time(), 200,
                                  str(result.get_response()["model_version"]))
            except InferenceServerException as exc:
                outcome = Outcome(sent, time.time(), int(exc.status() or 0), "", str(exc))
            except Exception as exc:  # no answer at all: that is a failure too
                outcome = Outcome(sent, time.time(), 0, "", f"{type(exc).__name__}: {exc}")
            self.outcomes.append(outcome)
        client.close()

    @contextmanager
    def running(self) -> Iterator[Load]:
        for t in self._threads:
            t.start()
        try:
            yield self
        finally:
            self._stop.set()
            for t in self._threads:
                t.join(120)

    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status != 200]


def wait_update(server: Server, model: str, timeout_s: float = 300) -> dict[str, Any]:
    """The model's update status once it has settled (DONE or FAILED)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        update: dict[str, Any] | None = server.health()["models"][model]["update"]
        if update is not None and update["state"] in ("DONE", "FAILED"):
            return update
        time.sleep(0.05)
    raise RuntimeError(f"the update of {model} did not settle")


def _phase(outcomes: list[Outcome], start: float, end: float) -> dict[str, Any]:
    inside = [o for o in outcomes if start <= o.sent < end]
    ok = [o.done - o.sent for o in inside if o.status == 200]
    if not ok:
        return {"requests": len(inside), "errors": len(inside)}
    return summarize(ok, end - start, errors=len(inside) - len(ok)).to_dict()


def run(plain: Path, clients: int, settle_s: float) -> dict[str, Any]:
    """The scenario: serve version 1 under load, upload version 2, keep the load on until
    version 1 is gone and ``settle_s`` more; the figures of each phase."""
    with tempfile.TemporaryDirectory(prefix="llmos-update-") as tmp:
        root = Path(tmp)
        keyfile, packs = seal_versions(plain, root)
        server = Server(write_config(root, keyfile, "minilm", packs["1"]))
        try:
            server.wait_ready()
            admin = Admin(server.port("admin"))
            with Load(server.port("api"), "minilm", clients).running() as load:
                time.sleep(settle_s)
                began = time.time()
                resp = admin.upload(packs["2"])
                answered = time.time()
                update = wait_update(server, "minilm")
                time.sleep(settle_s)
                ended = time.time()
        finally:
            server.stop()
    switched = update["started"] + (update["load_time_s"] or 0.0)
    return {
        "clients": clients, "upload_status": resp.status_code, "update": update,
        "upload_to_answer_s": round(answered - began, 3),
        "old_version_unloaded_after_switch_s": round(update["since"] - switched, 3),
        "failed": len(load.failures()), "requests": len(load.outcomes),
        "versions": sorted({o.version for o in load.outcomes if o.version}),
        "failures": [dataclasses.asdict(o) for o in load.failures()[:10]],
        "before": _phase(load.outcomes, began - settle_s, began),
        "during": _phase(load.outcomes, began, update["since"]),
        "after": _phase(load.outcomes, update["since"], ended),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plain", type=Path, default=DEMO_PLAIN)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--settle", type=float, default=5.0,
                        help="seconds of load before the upload and after the switch")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" /
                        "model_update.json")
    args = parser.parse_args(argv)
    result = run(args.plain, args.clients, args.settle)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0 if result["failed"] == 0 and result["update"]["state"] == "DONE" else 1


if __name__ == "__main__":
    sys.exit(main())
