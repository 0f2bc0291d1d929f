"""``llmos osupdate-agent``: take the request the admin page dropped, and carry it out.

Run as root by ``llmos-update.service`` when the request file appears. The request is read
and deleted first (a request is taken once, whatever becomes of it); an update renders the
transfer definitions for its source, runs ``systemd-sysupdate update`` and then ``list`` to
see what is installed; a reboot runs ``systemctl reboot``. Every step is in the status file
(``llmos.osupdate.status``) and in one line on stdout (the journal).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from llmos.errors import LlmosError
from llmos.osupdate import loopback, sysupdate
from llmos.osupdate import status as st
from llmos.osupdate.request import DIR_SOURCE, Request, Source, parse_request_bytes
from llmos.osupdate.system import SYSTEMCTL, SYSUPDATE, Runner

UPDATE_TIMEOUT_S = 30 * 60.0
LIST_TIMEOUT_S = 120.0
REBOOT_TIMEOUT_S = 60.0
MAX_REQUEST_BYTES = 64 * 1024


def read_request(path: Path) -> bytes:
    """The request file's bytes: a regular file, not through a symbolic link (the agent is
    root, the file's writer is not), at most ``MAX_REQUEST_BYTES``."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_REQUEST_BYTES:
            raise OSError(errno.EINVAL, "not a regular file of at most "
                                        f"{MAX_REQUEST_BYTES} bytes")
        return os.read(fd, MAX_REQUEST_BYTES)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Paths:
    request: Path
    state_dir: Path
    templates: Path

    @property
    def status(self) -> Path:
        return self.state_dir / "status.json"

    @property
    def definitions(self) -> Path:
        return self.state_dir / "sysupdate.d"


@dataclass(frozen=True)
class Agent:
    paths: Paths
    runner: Runner
    running: str | None  # IMAGE_VERSION of the booted image
    clock: Callable[[], float]
    say: Callable[[str], None] = print
    sysupdate: str = SYSUPDATE

    def __call__(self) -> int:
        """Take the request and carry it out: 0 when done as asked, 1 when not."""
        begun = st.Status("failed", self.running, started_at=self.clock())
        try:
            raw = read_request(self.paths.request)
        except OSError as exc:
            return self._fail(begun, f"cannot read the request {self.paths.request}: "
                                     f"{exc.strerror}")
        finally:
            self.paths.request.unlink(missing_ok=True)
        try:
            request = parse_request_bytes(raw, os.path.isdir)
        except LlmosError as exc:
            return self._fail(begun, f"refused the request: {exc}")
        if request.action == "reboot":
            return self._reboot(begun)
        return self._update(request, begun)

    def _report(self, status: st.Status, line: str) -> None:
        st.write(self.paths.status, status)
        self.say(f"osupdate: {line}")

    def _fail(self, begun: st.Status, why: str) -> int:
        self._report(begun.finished("failed", self.clock(), error=why), f"failed: {why}")
        return 1

    def _reboot(self, begun: st.Status) -> int:
        previous = st.read(self.paths.status)
        staged = previous.staged if previous is not None else None
        rebooting = st.Status("rebooting", self.running, staged, started_at=begun.started_at)
        self._report(rebooting, f"rebooting (staged: {staged or 'none'})")
        done = self.runner([SYSTEMCTL, "reboot"], REBOOT_TIMEOUT_S)
        if done.returncode != 0:
            why = "\n".join(st.tail(done.stderr, st.ERROR_LINES)) or \
                f"systemctl reboot exited {done.returncode}"
            return self._fail(rebooting, why)
        return 0

    def _update(self, request: Request, begun: st.Status) -> int:
        assert request.source is not None
        source = request.source
        begun = st.Status("downloading", self.running, source=source.path,
                          started_at=begun.started_at)
        with _fetchable(source) as fetch_from:
            return self._install(source, fetch_from, begun)

    def _install(self, source: Source, fetch_from: Source, begun: st.Status) -> int:
        try:
            sysupdate.write_definitions(self.paths.templates, self.paths.definitions,
                                        fetch_from)
        except (LlmosError, OSError) as exc:
            return self._fail(begun, f"cannot write the transfer definitions: {exc}")
        self._report(begun, f"downloading from {source.path} ({source.type}), running "
                            f"version {self.running or 'unknown'}")
        base = [self.sysupdate, f"--definitions={self.paths.definitions}", "--no-pager"]
        done = self.runner([*base, "update"], UPDATE_TIMEOUT_S)
        newest, list_error = None, None
        if done.returncode == 0:
            newest, list_error = self._installed(base)
        final = st.after_update(begun, self.clock(), done.returncode,
                                [*done.stdout.splitlines(), *done.stderr.splitlines()],
                                done.stderr, newest, list_error)
        line = {"staged": f"version {final.staged} staged; reboot to start it",
                "up-to-date": f"up to date (newest installed: {newest or 'none'})"}
        self._report(final, line.get(final.state, f"failed: {final.error}"))
        return 1 if final.state == "failed" else 0

    def _installed(self, base: list[str]) -> tuple[str | None, str | None]:
        """The newest installed version (JSON first, the table otherwise), or why not."""
        errors: list[str] = []
        for extra in (["--offline", "--json=short"], ["--offline"]):
            done = self.runner([*base, *extra, "list"], LIST_TIMEOUT_S)
            if done.returncode == 0:
                try:
                    return sysupdate.parse_list([done.stdout]), None
                except ValueError as exc:
                    errors.append(str(exc))
                    continue
            errors.extend(st.tail(done.stderr, 2))
        return None, f"installed, but cannot list the installed versions: {'; '.join(errors)}"


@contextmanager
def _fetchable(source: Source) -> Iterator[Source]:
    """The source sysupdate is to read: a local folder is served over loopback HTTP, so its
    signature and hashes are checked like a download's (``llmos.osupdate.loopback``)."""
    if source.type == DIR_SOURCE:
        with loopback.served(source.path) as served:
            yield served
    else:
        yield source
