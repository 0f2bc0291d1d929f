"""The admin page (and, optionally, the API) over HTTPS: a self-signed certificate made
once and kept, its fingerprint the one the server presents, logs and shows; Secure session
cookies; no plain HTTP."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import socket
import ssl
import stat
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509

from llmos import config
from llmos.admin.password_file import hash_path, set_password
from llmos.app import LlmOs
from llmos.config import Config
from llmos.errors import ConfigError
from llmos.systemd import Notifier
from llmos.tls import certificate, credential_names, make_self_signed, speaks_https

from .conftest import PASSWORD, Packs, form_token, server_config


def _presented_fingerprint(port: int) -> str:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            ctx.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


def test_the_self_signed_certificate_is_made_once_and_kept(tmp_path: Path) -> None:
    first = make_self_signed(tmp_path / "admin-tls", "appliance-7")
    again = make_self_signed(tmp_path / "admin-tls", "another-name")
    assert first == again  # the same files, the same fingerprint: browsers keep trusting it
    assert stat.S_IMODE(first.key.stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate(first.cert.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"appliance-7", "localhost"} <= set(names.get_values_for_type(x509.DNSName))
    assert first.origin == "self-signed" and len(first.fingerprint.split(":")) == 32


def _cfg(packs: Packs, tmp: Path, **values: object) -> Config:
    cfg = server_config(packs, tmp / "state", tmp / "packs")
    return Config({**cfg.values, "admin.tls": True, **values}, cfg.models, None)


def test_a_provided_certificate_wins_and_half_of_one_is_an_error(packs: Packs,
                                                                 tmp_path: Path) -> None:
    made = make_self_signed(tmp_path / "elsewhere", "provided")
    cfg = _cfg(packs, tmp_path, **{"admin.tls_cert": made.cert, "admin.tls_key": made.key})
    got = certificate(cfg, {}, "admin")
    assert got is not None and (got.origin, got.fingerprint) == ("configured", made.fingerprint)
    creds = tmp_path / "creds"
    creds.mkdir()
    cert_name, key_name = credential_names("admin")
    assert cert_name == "llmos-admin-tls-cert"
    (creds / cert_name).write_bytes(made.cert.read_bytes())
    (creds / key_name).write_bytes(made.key.read_bytes())
    got = certificate(_cfg(packs, tmp_path), {"CREDENTIALS_DIRECTORY": str(creds)}, "admin")
    assert got is not None and (got.origin, got.fingerprint) == ("credential", made.fingerprint)
    with pytest.raises(ConfigError, match="go together"):
        certificate(_cfg(packs, tmp_path, **{"admin.tls_cert": made.cert}), {}, "admin")
    (tmp_path / "bad.pem").write_text("not a certificate")
    with pytest.raises(ConfigError, match="does not load"):
        certificate(_cfg(packs, tmp_path, **{"admin.tls_cert": tmp_path / "bad.pem",
                                             "admin.tls_key": made.key}), {}, "admin")
    assert certificate(Config({**cfg.values, "admin.tls": False}, (), None), {}, "admin") is None
    assert certificate(cfg, {}, "api") is None  # server.tls is off: the API stays plain


def test_provisioned_means_https_with_a_given_certificate_and_plain_http_without(
        packs: Packs, tmp_path: Path) -> None:
    """The appliance's API (``server.tls = "provisioned"``): plain HTTP, no self-signed
    certificate made, until the credentials give one; the health gate, which imports the
    certificate credential alone, comes to the same answer."""
    cfg = _cfg(packs, tmp_path, **{"server.tls": "provisioned"})
    assert certificate(cfg, {}, "api") is None and not speaks_https(cfg, {}, "api")
    assert not (tmp_path / "state" / "api-tls").exists()
    made = make_self_signed(tmp_path / "operator", "provided")
    creds = tmp_path / "creds"
    creds.mkdir()
    cert_name, key_name = credential_names("api")
    (creds / cert_name).write_bytes(made.cert.read_bytes())
    environ = {"CREDENTIALS_DIRECTORY": str(creds)}
    assert speaks_https(cfg, environ, "api")  # the gate's view: the certificate alone
    (creds / key_name).write_bytes(made.key.read_bytes())
    got = certificate(cfg, environ, "api")
    assert got is not None and (got.origin, got.fingerprint) == ("credential", made.fingerprint)
    assert speaks_https(_cfg(packs, tmp_path, **{"server.tls": True}), {}, "api")
    assert not speaks_https(_cfg(packs, tmp_path, **{"server.tls": False}), environ, "api")
    # Kept: a later start without the credentials (the next boot) serves the same one.
    kept = tmp_path / "state" / "api-tls-given" / "key.pem"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    again = certificate(cfg, {}, "api")
    assert again is not None and again.fingerprint == made.fingerprint
    assert speaks_https(cfg, {}, "api")
    # A certificate that does not load is refused and leaves the kept one in place...
    (creds / cert_name).write_text("not a certificate")
    with pytest.raises(ConfigError, match="does not load"):
        certificate(cfg, environ, "api")
    again = certificate(cfg, {}, "api")
    assert again is not None and again.fingerprint == made.fingerprint
    # ...and another given later replaces it.
    other = make_self_signed(tmp_path / "rotated", "provided")
    (creds / cert_name).write_bytes(other.cert.read_bytes())
    (creds / key_name).write_bytes(other.key.read_bytes())
    rotated = certificate(cfg, environ, "api")
    assert rotated is not None and rotated.fingerprint == other.fingerprint
    again = certificate(cfg, {}, "api")
    assert again is not None and again.fingerprint == other.fingerprint


def test_the_tls_settings_take_a_boolean_or_provisioned(tmp_path: Path) -> None:
    path = tmp_path / "llmos.toml"
    path.write_text('[server]\ntls = "provisioned"\n[admin]\ntls = "yes"\n')
    loaded = config.load(path, {})
    assert loaded["server.tls"] == "provisioned" and loaded["admin.tls"] is True
    path.write_text('[server]\ntls = "sometimes"\n')
    with pytest.raises(ConfigError, match="sometimes"):
        config.load(path, {})


async def test_the_admin_listener_speaks_https_only(packs: Packs, tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "packs").mkdir()
    cfg = _cfg(packs, tmp_path)
    set_password(hash_path(tmp_path / "state"), PASSWORD)
    caplog.set_level(logging.INFO, logger="llmos.app")
    server = LlmOs(cfg, notifier=Notifier({})).server()
    await server.start()
    try:
        port = server.addresses["admin"][1]
        presented = await asyncio.to_thread(_presented_fingerprint, port)
        assert f"admin TLS certificate (self-signed), SHA-256 fingerprint {presented}" \
            in caplog.text  # the console line
        base = f"https://127.0.0.1:{port}"
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar) as http:
            async with http.get(f"{base}/login", ssl=False) as form:
                token = form_token(await form.text())
            async with http.post(f"{base}/login", ssl=False, allow_redirects=False, data={
                    "password": PASSWORD, "csrf_token": token, "next": "/"}) as login:
                assert login.status == 303
                cookie = login.headers["Set-Cookie"]
                assert "Secure" in cookie and "HttpOnly" in cookie, cookie
            async with http.get(f"{base}/api/overview", ssl=False) as overview:
                doc = await overview.json()
            assert doc["tls"] == {"fingerprint_sha256": presented, "origin": "self-signed"}
            with pytest.raises(aiohttp.ClientError):  # plain HTTP gets no admin page
                async with http.get(f"http://127.0.0.1:{port}/login") as plain:
                    await plain.read()
    finally:
        await server.stop()


async def test_the_api_can_speak_https_with_its_own_certificate(
        packs: Packs, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """server.tls: the inference API over HTTPS (its own self-signed certificate, not the
    admin page's); /health answers there, plain HTTP does not."""
    (tmp_path / "packs").mkdir()
    cfg = _cfg(packs, tmp_path, **{"server.tls": True})
    caplog.set_level(logging.INFO, logger="llmos.app")
    server = LlmOs(cfg, notifier=Notifier({})).server()
    await server.start()
    try:
        api, admin = server.addresses["api"][1], server.addresses["admin"][1]
        presented = await asyncio.to_thread(_presented_fingerprint, api)
        assert f"api TLS certificate (self-signed), SHA-256 fingerprint {presented}" \
            in caplog.text
        assert presented != await asyncio.to_thread(_presented_fingerprint, admin)
        assert (tmp_path / "state" / "api-tls" / "cert.pem").is_file()
        async with aiohttp.ClientSession() as http:
            async with http.get(f"https://127.0.0.1:{api}/v2/health/live", ssl=False) as live:
                assert live.status == 200
            with pytest.raises(aiohttp.ClientError):
                async with http.get(f"http://127.0.0.1:{api}/v2/health/live") as plain:
                    await plain.read()
    finally:
        await server.stop()
