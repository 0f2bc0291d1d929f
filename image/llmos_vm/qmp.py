"""A minimal QMP client (QEMU's JSON monitor protocol over a unix socket)."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from llmos_vm.errors import VmError


class Qmp:
    """Connects, negotiates capabilities, executes commands (events are skipped)."""

    def __init__(self, path: Path, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(str(path))
                break
            except OSError as exc:
                sock.close()
                if time.monotonic() > deadline:
                    raise VmError(f"cannot connect to QMP at {path}: {exc}",
                                  "is QEMU running with -qmp unix:PATH,server=on?") from exc
                time.sleep(0.1)
        sock.settimeout(timeout_s)
        self._sock = sock
        self._reader = sock.makefile("r", encoding="utf-8")
        greeting = self._read()
        if "QMP" not in greeting:
            raise VmError(f"unexpected QMP greeting: {greeting}", "")
        self.execute("qmp_capabilities")

    def _read(self) -> dict[str, Any]:
        line = self._reader.readline()
        if not line:
            raise VmError("QMP connection closed", "QEMU exited")
        message: dict[str, Any] = json.loads(line)
        return message

    def execute(self, command: str, **arguments: Any) -> Any:
        request: dict[str, Any] = {"execute": command}
        if arguments:
            request["arguments"] = arguments
        self._sock.sendall(json.dumps(request).encode() + b"\n")
        while True:
            reply = self._read()
            if "return" in reply:
                return reply["return"]
            if "error" in reply:
                raise VmError(f"QMP {command} failed: {reply['error'].get('desc')}", "")
            # an asynchronous event: skip it

    def close(self) -> None:
        self._reader.close()
        self._sock.close()

    def __enter__(self) -> Qmp:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
