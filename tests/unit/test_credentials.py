"""Where a service finds the credentials systemd passed it."""

from __future__ import annotations

from pathlib import Path

from llmos import credentials


def test_a_credential_is_a_file_in_the_credentials_directory(tmp_path: Path) -> None:
    (tmp_path / "llmos-settings").write_text("x")
    (tmp_path / "a-directory").mkdir()
    env = {"CREDENTIALS_DIRECTORY": str(tmp_path)}
    assert credentials.credentials_directory(env) == tmp_path
    assert credentials.credential(env, "llmos-settings") == tmp_path / "llmos-settings"
    assert credentials.credential(env, "llmos-api-keys") is None  # not passed
    assert credentials.credential(env, "a-directory") is None
    assert credentials.credentials_directory({}) is None
    assert credentials.credential({}, "llmos-settings") is None  # not under systemd
