from __future__ import annotations

from pathlib import Path

import pytest

from llmos import config
from llmos.errors import ConfigError


def test_defaults_need_no_file() -> None:
    cfg = config.load(environ={})
    assert cfg["server.port"] == 8000
    assert cfg["keys.provider"] == "tpm2"
    assert cfg.models == ()


def test_precedence_file_env_flags(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text('[server]\nport = 9000\nhost = "0.0.0.0"\n')
    cfg = config.load(f, environ={"LLMOS_SERVER_PORT": "9100"}, overrides={"server.host": "::1"})
    assert cfg["server.port"] == 9100
    assert cfg["server.host"] == "::1"


def test_models_resolved_against_packs_dir(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text(
        f'[server]\npacks_dir = "{tmp_path}"\n'
        '[[models]]\nname = "a"\npack = "a.sealed"\nmax_batch_size = 4\n'
        '[[models]]\nname = "b"\npack = "/abs/b.sealed"\n'
    )
    cfg = config.load(f, environ={})
    assert [m.name for m in cfg.models] == ["a", "b"]
    assert cfg.models[0].pack == tmp_path / "a.sealed"
    assert cfg.models[0].max_batch_size == 4
    assert cfg.models[1].pack == Path("/abs/b.sealed")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[server]\nport = -1\n", "server.port"),
        ("[server]\nbogus = 1\n", "unknown setting 'server.bogus'"),
        ("[[models]]\npack = 'x'\n", "has no 'name'"),
        ("[[models]]\nname = 'a'\npack = 'x'\nwat = 1\n", "unknown keys"),
        ("[[models]]\nname = 'a'\npack = 'x'\n[[models]]\nname = 'a'\npack = 'y'\n", "unique"),
        ("[server\n", "not valid TOML"),
    ],
)
def test_bad_config_is_named(tmp_path: Path, text: str, needle: str) -> None:
    f = tmp_path / "c.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as err:
        config.load(f, environ={})
    assert needle in str(err.value)


def test_keyfile_provider_needs_explicit_permission(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="development only"):
        config.load(environ={}, overrides={"keys.provider": "keyfile",
                                           "keys.keyfile": str(tmp_path / "k")})
    cfg = config.load(environ={}, overrides={"keys.provider": "keyfile",
                                             "keys.keyfile": str(tmp_path / "k"),
                                             "keys.allow_dev_key": True})
    assert cfg["keys.allow_dev_key"] is True


def test_bad_environment_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="LLMOS_SERVER_PORT"):
        config.load(environ={"LLMOS_SERVER_PORT": "many"})


def test_describe_lists_every_setting() -> None:
    doc = config.describe()
    for s in config.SETTINGS + config.MODEL_SETTINGS:
        assert f"`{s.key}`" in doc


def _credentials(tmp_path: Path, text: str) -> dict[str, str]:
    (tmp_path / "creds").mkdir()
    (tmp_path / "creds" / config.SITE_CREDENTIAL).write_text(text)
    return {"CREDENTIALS_DIRECTORY": str(tmp_path / "creds")}


def test_the_machine_credential_sets_deadlines_between_file_and_environment(
        tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text("[server]\nrequest_timeout_s = 10\nidle_timeout_s = 11\nbody_timeout_s = 12\n")
    env = _credentials(tmp_path, "[server]\nrequest_timeout_s = 240\nidle_timeout_s = 50\n")
    env["LLMOS_SERVER_IDLE_TIMEOUT_S"] = "60"
    cfg = config.load(f, environ=env)
    assert cfg["server.request_timeout_s"] == 240.0  # the credential over the file
    assert cfg["server.idle_timeout_s"] == 60.0  # the environment over the credential
    assert cfg["server.body_timeout_s"] == 12.0  # the file where the credential is silent


def test_the_machine_credential_cannot_reach_keys_code_or_listeners(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """What an attacker with the hypervisor's SMBIOS would try: a key file instead of the
    TPM, another pack, an open listener, an unauthenticated model loader. Each is refused
    and logged; the deadline beside them still applies."""
    f = tmp_path / "c.toml"
    f.write_text('[server]\nhost = "127.0.0.1"\n[[models]]\nname = "m"\npack = "/p/m.sealed"\n')
    env = _credentials(tmp_path, "\n".join([
        "[server]", "request_timeout_s = 99", 'host = "0.0.0.0"', "repository_control = true",
        'packs_dir = "/tmp/evil"', "max_body_bytes = -1",
        "[keys]", 'provider = "keyfile"', 'keyfile = "/tmp/evil.key"', "allow_dev_key = true",
        "[[models]]", 'name = "evil"', 'pack = "/tmp/evil.sealed"', ""]))
    cfg = config.load(f, environ=env)
    assert cfg["server.request_timeout_s"] == 99.0
    assert cfg["keys.provider"] == "tpm2" and cfg["keys.keyfile"] is None
    assert cfg["server.host"] == "127.0.0.1" and cfg["server.repository_control"] is False
    assert cfg["server.max_body_bytes"] == 16 * 1024 * 1024
    assert [m.name for m in cfg.models] == ["m"]
    refused = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    for key in ("server.host", "server.repository_control", "server.packs_dir",
                "server.max_body_bytes", "keys.provider", "keys.keyfile", "models"):
        assert any(key in line for line in refused), (key, refused)


def test_a_machine_credential_that_is_not_toml_changes_nothing(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = config.load(None, environ=_credentials(tmp_path, "request_timeout_s = [\n"))
    assert cfg["server.request_timeout_s"] == 30.0
    assert "not valid TOML" in caplog.text


def test_site_settings_are_settings() -> None:
    keys = {s.key for s in config.SETTINGS}
    assert keys >= config.SITE_SETTINGS
    assert not any(k.startswith(("keys.", "admin.")) for k in config.SITE_SETTINGS)
