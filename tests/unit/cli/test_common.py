"""What every command shares (mesp_core.cli.common): one-line errors with exit code 2 for a missing or
malformed trace and a corrupt model."""

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
