"""An update source for the guest: a directory served over HTTP on the host, as a fleet's
update server would serve `make update-image`'s artifacts. QEMU's user networking shows the
host's 127.0.0.1 to the guest as 10.0.2.2.

``stall_on`` makes the server stop in the middle of one file (it sends that many bytes and
then holds the connection), so that a test can cut the power while an update is being
written; ``stalled`` is set when that happens.
"""

from __future__ import annotations

import functools
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

GUEST_HOST = "10.0.2.2"
CHUNK = 1 << 20


class UpdateSource:
    def __init__(self, root: Path, stall_on: tuple[str, int] | None = None) -> None:
        self.root = root
        self.stall_on = stall_on  # (file name suffix, bytes to send before holding)
        self.stalled = threading.Event()
        self.release = threading.Event()
        self.served: list[str] = []
        handler = functools.partial(_Handler, self, directory=str(root))
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The source as the guest sees it."""
        return f"http://{GUEST_HOST}:{self._server.server_address[1]}/"

    def __enter__(self) -> UpdateSource:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()


class _Handler(SimpleHTTPRequestHandler):
    def __init__(self, source: UpdateSource, *args: object, **kwargs: object) -> None:
        self.source = source
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def log_message(self, format: str, *args: object) -> None:
        pass

    def copyfile(self, source: BinaryIO, outputfile: BinaryIO) -> None:  # type: ignore[override]
        self.source.served.append(self.path)
        stall = self.source.stall_on
        if stall is None or not self.path.endswith(stall[0]):
            shutil.copyfileobj(source, outputfile, CHUNK)
            return
        left = stall[1]
        while left > 0 and (chunk := source.read(min(CHUNK, left))):
            outputfile.write(chunk)
            left -= len(chunk)
        outputfile.flush()
        self.source.stalled.set()
        self.source.release.wait()
