"""Demo mode (``llmos serve`` on a host): a random password is generated on first start,
shown once on the terminal (never through logging), and only its hash is kept."""

from __future__ import annotations

import re

import pytest

from llmos.admin.password_file import read_hash

from .conftest import AdminServer, Start, login


async def test_first_start_generates_shows_once_and_stores_only_the_hash(
        start_admin: Start, capfd: pytest.CaptureFixture[str]) -> None:
    srv: AdminServer = await start_admin(password=None, generate_password=True)
    err = capfd.readouterr().err
    found = re.search(r"password: (\S+)", err)
    assert found, err
    password = found.group(1)
    path = srv.state.options.password_file
    assert read_hash(path) is not None and password.encode() not in path.read_bytes()
    assert not any(password in line.message for line in srv.state.logs.lines())
    await login(srv.admin, password)
    assert (await srv.admin.get("/api/overview")).status == 200
