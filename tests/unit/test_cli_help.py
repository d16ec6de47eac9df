"""`mallrec --help` and every subcommand's --help explain themselves (and never crash)."""

import pytest
from typer.testing import CliRunner

from service.cli import app

runner = CliRunner()
COMMANDS = [c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands]
COMMANDS += [g.name for g in app.registered_groups]


def test_root_help_lists_every_command():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert name in result.output


@pytest.mark.parametrize("name", COMMANDS)
def test_subcommand_help(name):
    result = runner.invoke(app, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output and "--" in result.output
