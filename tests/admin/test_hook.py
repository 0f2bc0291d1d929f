"""The server's admin listener uses this app (``llmos.app.LlmOs.admin_app``), with settings
from the configuration."""

from __future__ import annotations

from pathlib import Path

from llmos.app import LlmOs
from llmos.systemd import Notifier
from llmos.web.admin.state import ADMIN, AdminOptions

from .conftest import Packs, server_config


def test_the_admin_listener_serves_this_console(packs: Packs, tmp_path: Path) -> None:
    cfg = server_config(packs, tmp_path / "state", tmp_path / "packs")
    app = LlmOs(cfg, notifier=Notifier({})).admin_app()
    assert ADMIN in app
    options = app[ADMIN].options
    assert options.password_file == tmp_path / "state" / "admin-password"
    assert options.packs_dir == tmp_path / "packs"
    paths = {r.resource.canonical for r in app.router.routes() if r.resource is not None}
    assert {"/login", "/", "/api/overview", "/api/charts"} <= paths


def test_options_follow_systemd_and_demo_mode(packs: Packs, tmp_path: Path) -> None:
    cfg = server_config(packs, tmp_path / "state", tmp_path / "packs")
    host = AdminOptions.from_config(cfg, environ={})
    assert host.generate_password and not host.under_systemd
    unit = AdminOptions.from_config(cfg, environ={"INVOCATION_ID": "abc"})
    assert unit.under_systemd and not unit.generate_password
