"""Layering: checked statically by import-linter and dynamically by what an import really loads."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY_FOR_SERVING = {"optuna", "matplotlib", "kopf", "kubernetes", "prometheus_api_client", "ray"}


def _loaded_after(code: str) -> set[str]:
    probe = code + "\nimport sys, json\nprint(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_import_linter_contracts_hold():
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    assert lint, "import-linter is a test dependency (pip install -e '.[test]')"
    result = subprocess.run([lint, "--no-cache"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_importing_the_core_and_loading_a_model_pulls_no_cluster_or_training_library():
    loaded = _loaded_after(
        "import mesp_core, mesp_core.forecasting.model, mesp_core.forecasting.router, mesp_core.policy, mesp_core.data.trace\n"
        f"m = mesp_core.load_model({str(ROOT / 'tests/golden/model_v1')!r})\n"
        "import numpy as np; m.forecast(np.ones((2, 120)), 30)"
    )
    assert not loaded & HEAVY_FOR_SERVING, loaded & HEAVY_FOR_SERVING


def test_the_operator_never_loads_optuna_or_matplotlib():
    loaded = _loaded_after(
        "import mesp_operator.main, mesp_operator.reconcile, mesp_operator.handlers\n"
        "import mesp_core\n"
        f"mesp_core.load_model({str(ROOT / 'tests/golden/model_v1')!r})"
    )
    assert "kopf" in loaded  # the probe really imported the operator
    assert not loaded & {"optuna", "matplotlib"}, loaded & {"optuna", "matplotlib"}


def test_cli_help_is_cheap():
    loaded = _loaded_after("from mesp_core import cli\ncli.build_parser().format_help()")
    assert not loaded & (HEAVY_FOR_SERVING | {"torch"}), loaded


LAYERS_CONTRACT = "MESP is layered: a package imports only the layers below it"
ACYCLIC_CONTRACT = "No module imports another that imports it back (no cycles between siblings, at any depth)"
# Imports added by hand to a copy of the code: one layer importing a layer above it, one cycle between
# two modules of the same layer (the layers contract allows imports within a layer).
UPWARD_IMPORT = ("mesp_core/data/windows.py", "top", "from mesp_core.forecasting import router")
SIBLING_CYCLE = ("mesp_core/replay/policies.py", "end", "from mesp_core.replay import baselines")


def _lint_copy(tmp_path: Path, *edits) -> tuple[int, str]:
    """lint-imports on a copy of mesp_core/, operator/ and pyproject.toml with `edits` applied; (exit code, output)."""
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    assert lint, "import-linter is a test dependency (pip install -e '.[test]')"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "default_model")  # the packaged weights are no code
    shutil.copytree(ROOT / "mesp_core", tmp_path / "mesp_core", ignore=ignore)
    shutil.copytree(ROOT / "operator", tmp_path / "operator", ignore=ignore)
    shutil.copy2(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    for relative, where, line in edits:
        path = tmp_path / relative
        text = path.read_text()
        assert line not in text  # the import really is new
        path.write_text(f"{line}\n{text}" if where == "top" else f"{text.rstrip()}\n{line}\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{tmp_path / 'operator'}", "COLUMNS": "400"}
    result = subprocess.run([lint, "--no-cache"], capture_output=True, text=True, cwd=tmp_path, env=env)
    return result.returncode, " ".join((result.stdout + result.stderr).split())  # unwrapped


def test_an_untouched_copy_keeps_both_contracts(tmp_path):
    code, output = _lint_copy(tmp_path)
    assert code == 0, output
    assert f"{LAYERS_CONTRACT} KEPT" in output and f"{ACYCLIC_CONTRACT} KEPT" in output


def test_an_upward_import_breaks_the_layers_contract(tmp_path):
    code, output = _lint_copy(tmp_path, UPWARD_IMPORT)
    assert code != 0, output
    assert f"{LAYERS_CONTRACT} BROKEN" in output, output
    assert "mesp_core.data is not allowed to import mesp_core.forecasting" in output, output
    assert "mesp_core.data.windows -> mesp_core.forecasting.router (l.1)" in output, output


def test_a_cycle_between_siblings_breaks_the_acyclic_contract(tmp_path):
    code, output = _lint_copy(tmp_path, SIBLING_CYCLE)
    assert code != 0, output
    assert f"{ACYCLIC_CONTRACT} BROKEN" in output, output
    assert "No cycles are allowed in mesp_core.replay" in output and ".policies -> .baselines" in output, output
    # Both modules sit in one layer: only the acyclic contract can see this one.
    assert f"{LAYERS_CONTRACT} KEPT" in output, output


RAY_CONTRACT = "Only mesp_core.distributed imports Ray"


def test_ray_imported_outside_the_distributed_package_breaks_its_contract(tmp_path):
    code, output = _lint_copy(tmp_path, ("mesp_core/offline/training.py", "end", "import ray"))
    assert code != 0, output
    assert f"{RAY_CONTRACT} BROKEN" in output, output
    assert "mesp_core.offline.training -> ray" in output, output
