"""A local update source (a USB stick, a folder on the ESP) served over loopback HTTP while
systemd-sysupdate reads it.

sysupdate checks the signature of SHA256SUMS and the hash of every file only for sources it
downloads (``url-file``); a ``regular-file`` source would be copied unchecked. Serving the
folder on 127.0.0.1 for the length of one update gives a local source the very same checks
as the network: the bytes written into the slot are the bytes that were hashed.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

from llmos.osupdate.request import URL_SOURCE, Source


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def served(directory: str) -> Iterator[Source]:
    """``directory`` as a ``url-file`` source on 127.0.0.1 (a free port) while inside."""
    handler = functools.partial(_Quiet, directory=directory)
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="osupdate-loopback",
                              daemon=True)
    thread.start()
    try:
        yield Source(URL_SOURCE, f"http://127.0.0.1:{server.server_address[1]}/")
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
