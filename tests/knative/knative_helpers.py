"""Shared helpers of the Knative suite. Test modules import from here, never from conftest (tests/unit
and tests/integration have a conftest too, and `from conftest import ...` finds whichever came first)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# the integration suite's helpers (wait_for, Knative constants), shared read-only
sys.path.insert(0, str(REPO / "tests" / "integration"))

# Figures measured by the tests (seconds), printed at the end of the run and kept in the bed's
# work directory as timings.json.
TIMINGS: dict[str, float] = {}


def load_bed_module():
    """hack/knative-bed.py, loaded once."""
    module = sys.modules.get("mesp_knative_bed")
    if module is None:
        spec = importlib.util.spec_from_file_location("mesp_knative_bed", REPO / "hack" / "knative-bed.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["mesp_knative_bed"] = module
        spec.loader.exec_module(module)
    return module


def ready(obj: dict | None) -> bool:
    return bool(obj) and any(c.get("type") == "Ready" and c.get("status") == "True"
                             for c in (obj.get("status") or {}).get("conditions") or [])
