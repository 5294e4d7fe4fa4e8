"""What every command shares (mesp_core.cli.common): one-line errors with exit code 2 for a missing or
malformed trace and a corrupt model; JSON output, fractions, loading the trace, the exit-code contract."""

import argparse
import json

import numpy as np
import pytest

from mesp_core.cli import main
from mesp_core.cli.common import EXIT_BAD_INPUT, CliError, emit, fraction, jsonable, load_trace, model_dir, run_parsed
from mesp_core.data.synthetic import generate_trace
from mesp_core.data.writer import write_invocations
from mesp_core.forecasting.model import default_model_path

from .support import GOLDEN, TINY_TRACE, _one_line_error


def test_missing_trace_file(capsys, tmp_path):
    line = _one_line_error(capsys, ["cluster", "--trace", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "c")])
    assert "nope.csv" in line


def test_malformed_trace_names_file_and_line(capsys, tmp_path):
    bad = tmp_path / "invocations_per_function_md.anon.d01.csv"
    header = "HashOwner,HashApp,HashFunction,Trigger," + ",".join(str(i) for i in range(1, 1441))
    good = "o,a,f1,http," + ",".join("1" for _ in range(1440))
    negative = "o,a,f2,http," + ",".join("-3" if i == 5 else "1" for i in range(1440))
    bad.write_text("\n".join([header, good, negative]) + "\n")
    line = _one_line_error(capsys, ["forecast", "--model", str(GOLDEN), "--trace", str(bad)])
    assert f"{bad}:3" in line and "negative" in line


def test_corrupt_model_is_one_line(capsys, tmp_path):
    (tmp_path / "manifest.json").write_text("garbage")
    line = _one_line_error(capsys, ["forecast", "--model", str(tmp_path), *TINY_TRACE])
    assert "corrupt manifest" in line


def _args(**kwargs):
    return argparse.Namespace(**kwargs)


def test_emit_prints_the_table_and_writes_json_beside_it_or_instead_of_it(tmp_path, capsys):
    payload = {"values": np.arange(3), "where": tmp_path}
    emit(_args(json=None), payload, "the table")
    assert capsys.readouterr() == ("the table\n", "")
    target = tmp_path / "new" / "figures.json"
    emit(_args(json=str(target)), payload, "the table")
    captured = capsys.readouterr()
    assert captured.out == "the table\n" and f"figures written to {target}" in captured.err
    assert json.loads(target.read_text()) == {"values": [0, 1, 2], "where": str(tmp_path)}
    emit(_args(json="-"), payload, "the table")
    out = capsys.readouterr().out
    assert "the table" not in out and json.loads(out) == {"values": [0, 1, 2], "where": str(tmp_path)}


def test_jsonable_refuses_what_json_cannot_hold():
    with pytest.raises(TypeError, match="object"):
        jsonable(object())


def test_fraction_takes_zero_up_to_but_not_one():
    assert fraction("0") == 0.0 and fraction("0.25") == 0.25
    for text, message in [("1", r"must be in \[0, 1\), got 1"), ("-0.1", "must be in"), ("abc", "not a number: 'abc'"),
                          ("nan", "must be in")]:
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            fraction(text)


def test_a_holdout_outside_zero_to_one_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--out", "m", "--holdout", "1.0"])
    assert info.value.code == 2 and "--holdout: must be in [0, 1), got 1.0" in capsys.readouterr().err


def test_load_trace_reads_files_or_generates_and_says_which(tmp_path, capsys):
    generated = load_trace(_args(trace=None, synthetic_functions=12, synthetic_days=1, seed=5))
    assert generated == generate_trace(n_functions=12, days=1, seed=5)
    assert capsys.readouterr().err.endswith("mesp: 12 functions x 1440 minutes from generated trace (seed 5)\n")
    paths = [str(p) for p in write_invocations(generated, tmp_path / "trace")]
    assert load_trace(_args(trace=paths, skip_bad_rows=False), progress=False) == generated
    assert "from 1 file(s)" in capsys.readouterr().err
    for functions, days in [(9, 1), (12, 0)]:
        with pytest.raises(CliError, match="--synthetic-functions must be >= 10 and --synthetic-days >= 1"):
            load_trace(_args(trace=None, synthetic_functions=functions, synthetic_days=days, seed=0))


def test_skipped_rows_are_counted_on_stderr(tmp_path, capsys):
    header = "HashOwner,HashApp,HashFunction,Trigger," + ",".join(str(i) for i in range(1, 1441))
    good = "o,a,f1,http," + ",".join("1" for _ in range(1440))
    path = tmp_path / "invocations_per_function_md.anon.d01.csv"
    path.write_text("\n".join([header, good, "o,a,f2,http,1,2"]) + "\n")
    trace = load_trace(_args(trace=[str(path)], skip_bad_rows=True), progress=False)
    assert trace.n_functions == 1
    assert f"mesp: skipped 1 malformed rows (first: ('{path}', 3, " in capsys.readouterr().err


def test_model_dir_is_the_packaged_model_unless_one_is_named():
    assert model_dir(_args(model=None)) == str(default_model_path())
    assert model_dir(_args(model="some/model")) == "some/model"


def test_run_parsed_turns_bad_input_into_exit_2_and_interrupts_into_130(capsys):
    def raising(exc):
        def run(args):
            raise exc
        return run

    assert run_parsed(_args(command="forecast", func=lambda args: 0)) == 0
    for exc in (CliError("no such function"), ValueError("horizon must be positive"), FileNotFoundError("x.csv")):
        assert run_parsed(_args(command="forecast", func=raising(exc))) == EXIT_BAD_INPUT == 2
        assert capsys.readouterr().err == f"mesp forecast: error: {exc}\n"
    assert run_parsed(_args(command="simulate", func=raising(KeyboardInterrupt()))) == 130
    assert capsys.readouterr().err == "mesp simulate: interrupted\n"
    with pytest.raises(RuntimeError):  # a bug is not bad input: it keeps its traceback
        run_parsed(_args(command="forecast", func=raising(RuntimeError("bug"))))
