"""`mesp operator` (mesp_core.cli.operator): the operator's own options, passed through untouched."""

import pytest

from mesp_core.cli import build_parser, main


def test_help_is_the_operators_own(capsys):
    with pytest.raises(SystemExit) as info:
        main(["operator", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: mesp operator") and "--prometheus-url" in out and "--loop-interval-seconds" in out


def test_bad_operator_options_are_one_line_and_exit_2(tmp_path, capsys):
    assert main(["operator", "--no-such-flag"]) == 2
    assert "mesp operator: error: unrecognized arguments: --no-such-flag" in capsys.readouterr().err
    assert main(["operator", "--model", str(tmp_path / "absent")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"mesp operator: --model: {tmp_path / 'absent'} is not a directory"]


def test_the_command_is_listed_with_the_others():
    assert "operator" in build_parser().format_help()
