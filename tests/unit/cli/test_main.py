"""`mesp` as users run it (mesp_core.cli): every command explains itself; the console script."""

import subprocess
import sys

import pytest

from mesp_core.cli import main

from ..paths import REPO as ROOT
from .support import COMMANDS, TINY_TRACE


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_explains_itself(command, capsys):
    from mesp_core.cli import build_parser

    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    subcommand = build_parser()._subparsers._group_actions[0].choices[command]
    assert subcommand.description and subcommand.description.split()[0] in out
    unexplained = [action.option_strings for action in subcommand._actions if not action.help]
    assert not unexplained, f"options without a help text: {unexplained}"


def test_console_script_runs_out_of_process():
    result = subprocess.run([sys.executable, "-m", "mesp_core.cli", "forecast", "--model", "/nonexistent/model", *TINY_TRACE],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("mesp forecast: error:")


def test_mesp_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in [*COMMANDS, "operator"]:
        assert f"    {command} " in out, command


def test_no_command_or_an_unknown_one_is_a_usage_error(capsys):
    for argv in ([], ["fly"]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
        assert "usage: mesp" in capsys.readouterr().err
