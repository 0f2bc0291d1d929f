"""Renders the HAProxy configuration for a set of appliances (template: haproxy.cfg.in).

Health checks ask ``/v2/health/ready`` (an appliance draining answers 400 and is taken
out after ``fall`` checks); refused connections, empty responses and 503s are retried on
another appliance. ``drain_s`` on the appliances should be at least ``inter x fall``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from string import Template

from llmos.errors import ConfigError

_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@dataclass(frozen=True)
class Backend:
    name: str
    address: str  # host:port of an appliance's inference API


@dataclass(frozen=True)
class Options:
    bind: str = "127.0.0.1:8080"
    inter_ms: int = 1000
    fastinter_ms: int = 250
    fall: int = 2
    rise: int = 2
    retries: int = 3
    server_maxconn: int = 64
    maxconn: int = 4096
    bufsize: int = 65536
    connect_timeout_ms: int = 2000
    check_timeout_ms: int = 1000
    request_timeout_s: int = 300
    stats_socket: str | None = None  # e.g. /run/haproxy.sock: 'set server ... state drain'

    @property
    def detection_s(self) -> float:
        """Longest time before a draining appliance is out (set its drain_s to this)."""
        return (self.inter_ms + (self.fall - 1) * self.fastinter_ms
                + self.check_timeout_ms) / 1000


def parse_backend(text: str, index: int) -> Backend:
    """``NAME=HOST:PORT`` or ``HOST:PORT`` (named ``applianceN``)."""
    name, sep, address = text.rpartition("=")
    if not sep:
        name = f"appliance{index + 1}"
    host, colon, port = address.rpartition(":")
    if not colon or not host or not port.isdigit() or not _NAME.fullmatch(name) \
            or any(c.isspace() for c in address):
        raise ConfigError(f"{text!r} is not NAME=HOST:PORT", "e.g. rack1=10.0.0.21:8000")
    return Backend(name, address)


def render(backends: list[Backend], options: Options = Options()) -> str:
    if not backends:
        raise ConfigError("no appliances given", "name at least one HOST:PORT")
    names = [b.name for b in backends]
    if len(set(names)) != len(names):
        raise ConfigError(f"appliance names repeat: {names}", "give each its own name")
    template = Template(resources.files("llmos.fleet").joinpath("haproxy.cfg.in").read_text())
    stats = (f"    stats socket {options.stats_socket} mode 600 level admin"
             if options.stats_socket else "")
    return template.substitute(
        maxconn=options.maxconn, bufsize=options.bufsize, stats_socket=stats,
        connect_timeout=f"{options.connect_timeout_ms}ms",
        request_timeout=f"{options.request_timeout_s}s",
        check_timeout=f"{options.check_timeout_ms}ms", retries=options.retries,
        bind=options.bind, inter=f"{options.inter_ms}ms",
        fastinter=f"{options.fastinter_ms}ms", fall=options.fall, rise=options.rise,
        server_maxconn=options.server_maxconn,
        servers="\n".join(f"    server {b.name} {b.address}" for b in backends))
