"""The listeners' TLS certificates: one provided, or a self-signed one made once.

With ``admin.tls`` (the admin page) or ``server.tls`` (the inference API) on, that listener
speaks HTTPS only. Its certificate is, in order:

1. ``<section>.tls_cert`` / ``<section>.tls_key`` (PEM files), or the systemd credentials
   ``llmos-<role>-tls-cert`` / ``llmos-<role>-tls-key`` (the appliance's way, like the admin
   password; kept in ``<state_dir>/<role>-tls-given/`` for later starts without them, until
   other credentials replace them);
2. otherwise a self-signed one (EC P-256, ten years, this host's name, ``localhost`` and
   127.0.0.1), made at the first start in ``<state_dir>/<role>-tls/`` (the key 0600) and
   kept, so clients that trusted it keep trusting it; with ``<section>.tls =
   "provisioned"`` none is made and the listener speaks plain HTTP until a certificate is
   given (the appliance's API: HTTPS once the operator provisions the credentials).

Its SHA-256 fingerprint is logged at every start (the console on the appliance) and the
admin page's is shown on its overview: comparing the two is how an operator trusts a
self-signed certificate. Session cookies are ``Secure`` on such a listener
(``request.secure``). This is the one module that makes certificates (``cryptography``'s
x509, imported where it is used: the health gate asks this module only whether the API
speaks HTTPS, and imports nothing heavy).
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from llmos.config import Config
from llmos.config_values import TLS_PROVISIONED
from llmos.credentials import credential
from llmos.errors import ConfigError
from llmos.files import atomic_write

log = logging.getLogger(__name__)

VALID_DAYS = 3650
#: listener role -> its settings' section
SECTIONS = {"admin": "admin", "api": "server"}


def credential_names(role: str) -> tuple[str, str]:
    return f"llmos-{role}-tls-cert", f"llmos-{role}-tls-key"


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path
    fingerprint: str  # SHA-256 of the DER certificate, "AB:CD:..."
    origin: str  # "configured", "credential", "self-signed"

    def context(self) -> ssl.SSLContext:
        """A server-side context: TLS 1.2 or later, this certificate."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.cert, self.key)
        return ctx

    def to_dict(self) -> dict[str, str]:
        return {"fingerprint_sha256": self.fingerprint, "origin": self.origin}


def fingerprint(cert_pem: bytes) -> str:
    from cryptography import x509  # here: the health gate uses this module, not them
    from cryptography.hazmat.primitives import hashes

    digest = x509.load_pem_x509_certificate(cert_pem).fingerprint(hashes.SHA256())
    return ":".join(f"{b:02X}" for b in digest)


def _loaded(cert: Path, key: Path, origin: str, role: str = "") -> Certificate:
    try:
        found = fingerprint(cert.read_bytes())
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (OSError, ValueError, ssl.SSLError) as exc:
        raise ConfigError(f"the {role + ' ' if role else ''}TLS certificate {cert} (key {key}) "
                          f"does not load: {exc}",
                          "give a PEM certificate and its private key, or remove them to "
                          "use a self-signed certificate") from exc
    return Certificate(cert, key, found, origin)


def make_self_signed(directory: Path, hostname: str | None = None,
                     role: str = "") -> Certificate:
    """The self-signed certificate in ``directory``, made now if there is none."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    if cert.is_file() and key.is_file():
        return _loaded(cert, key, "self-signed", role)
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    host = hostname or socket.gethostname() or "llmos"
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{host} (LLM OS)")])
    now = datetime.datetime.now(datetime.UTC)
    names: list[x509.GeneralName] = [x509.DNSName(host), x509.DNSName("localhost"),
                                     x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(private.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(private, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write(key, [private.private_bytes(serialization.Encoding.PEM,
                                             serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption())], mode=0o600)
    atomic_write(cert, [certificate.public_bytes(serialization.Encoding.PEM)])
    log.info("admin: made a self-signed TLS certificate in %s", directory)
    return _loaded(cert, key, "self-signed", role)


def _kept(cfg: Config, role: str) -> tuple[Path, Path]:
    """Where the certificate last given as credentials to listener ``role`` is kept."""
    directory = Path(cfg["server.state_dir"]) / f"{role}-tls-given"
    return directory / "cert.pem", directory / "key.pem"


def _keep(cert: Path, key: Path, kept: tuple[Path, Path]) -> None:
    """Copy a certificate given as credentials to the state directory (the key 0600), so
    that later boots, which the hypervisor or operator need not hand it to again, keep
    it; a new one given later replaces it."""
    kept_cert, kept_key = kept
    if kept_cert.is_file() and kept_key.is_file() and \
            kept_cert.read_bytes() == cert.read_bytes() and \
            kept_key.read_bytes() == key.read_bytes():
        return
    kept_cert.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write(kept_key, [key.read_bytes()], mode=0o600)
    atomic_write(kept_cert, [cert.read_bytes()])


def _provided(cfg: Config, environ: Mapping[str, str], role: str) -> tuple[Path, Path, str] | None:
    """(cert, key, origin) of the certificate given to listener ``role``: configured paths,
    else the credentials, else the copy kept from a credential of an earlier start; None
    when none is given."""
    section = SECTIONS[role]
    cert, key = cfg[f"{section}.tls_cert"], cfg[f"{section}.tls_key"]
    if (cert is None) != (key is None):
        raise ConfigError(f"{section}.tls_cert and {section}.tls_key go together",
                          "give both, or neither for a self-signed certificate")
    if cert is not None:
        return cert, key, "configured"
    cert_name, key_name = credential_names(role)
    given = credential(environ, cert_name)
    if given is not None:
        return given, given.with_name(key_name), "credential"
    kept = _kept(cfg, role)
    if kept[0].is_file():
        return *kept, "credential"
    return None


def speaks_https(cfg: Config, environ: Mapping[str, str], role: str) -> bool:
    """Whether listener ``role`` speaks HTTPS: ``<section>.tls`` on, or ``provisioned``
    and a certificate given (what a local client such as the health gate needs to know;
    for the gate, the certificate credential alone is enough to tell)."""
    mode = cfg[f"{SECTIONS[role]}.tls"]
    if mode == TLS_PROVISIONED:
        return _provided(cfg, environ, role) is not None
    return bool(mode)


def certificate(cfg: Config, environ: Mapping[str, str], role: str) -> Certificate | None:
    """The certificate of listener ``role`` ("admin", "api"); None: it speaks plain HTTP.
    ``<section>.tls = "provisioned"``: a given certificate, or plain HTTP (never a
    self-signed one: the appliance's API, HTTPS once the operator provisions one). A
    certificate from the credentials is kept once it loads (one that does not is refused
    before it can replace the kept one)."""
    mode = cfg[f"{SECTIONS[role]}.tls"]
    if not mode:
        return None
    given = _provided(cfg, environ, role)
    if given is None:
        if mode == TLS_PROVISIONED:
            return None
        return make_self_signed(Path(cfg["server.state_dir"]) / f"{role}-tls", role=role)
    loaded = _loaded(*given, role)
    kept = _kept(cfg, role)
    if loaded.origin == "credential" and loaded.cert != kept[0]:
        _keep(loaded.cert, loaded.key, kept)
    return loaded
