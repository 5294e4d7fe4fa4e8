"""Layering: checked statically by import-linter and dynamically by what an import really loads."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY_FOR_SERVING = {"optuna", "matplotlib", "kopf", "kubernetes", "prometheus_api_client"}


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
