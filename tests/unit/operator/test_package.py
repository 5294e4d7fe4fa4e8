"""The tests mirror the package: every operator module has a test module of its own."""

from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[3] / "operator" / "mesp_operator"


def test_every_operator_module_has_tests_of_its_own():
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__", "__main__"}
    tested = {p.stem.removeprefix("test_") for p in Path(__file__).parent.glob("test_*.py")}
    assert modules - tested == set(), "add tests/unit/operator/test_<module>.py"
