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
