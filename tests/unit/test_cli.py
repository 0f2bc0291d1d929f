"""The command line registers only the command it runs (the supervisor starts sooner)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from llmos import cli


@pytest.mark.parametrize(("argv", "named"), [
    (["serve", "--config", "x.toml"], "serve"),
    (["config-doc"], "config_doc"),
    (["--version"], None),
    (["--help"], None),
    (["bogus", "serve"], None),
    ([], None),
])
def test_the_first_word_names_the_command(argv: list[str], named: str | None) -> None:
    assert cli.named_command(argv) == named


def test_registering_serve_alone_imports_none_of_the_heavy_modules() -> None:
    heavy = ("numpy", "asyncio", "aiohttp", "onnxruntime", "cryptography", "llmos.pack.packer")
    code = ("import sys; from llmos.cli import build_parser; build_parser(('serve',)); "
            f"print(','.join(m for m in {heavy!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == ""


@pytest.mark.parametrize("command", ["osupdate_agent", "health_gate"])
def test_the_os_update_commands_import_nothing_heavy(command: str) -> None:
    """They run at every update and on every new version's boot, beside the supervisor."""
    heavy = ("numpy", "asyncio", "aiohttp", "onnxruntime", "cryptography")
    code = ("import sys; from llmos.cli import build_parser; "
            f"build_parser(({command!r},)); "
            f"print(','.join(m for m in {heavy!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == ""


def test_a_named_command_still_parses_and_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["config-doc"]) == 0
    assert "server.port" in capsys.readouterr().out


def test_no_command_lists_them_all(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert all(name in out for name in ("serve", "pack", "seal", "enroll", "config-doc"))
