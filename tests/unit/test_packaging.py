"""The wheel the Dockerfile installs (`pip install .`): it must carry the packaged model byte for byte
and the operator package, and work from an install that is not this checkout. The image itself cannot
be built here (no Docker engine), so this is what checks its contents."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "mesp_core" / "default_model"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    # Built from a copy of what .dockerignore lets into the image's build context (its `!` lines), so
    # nothing else in the checkout (and no setuptools build/ folder left in it) can leak into the wheel.
    source = tmp_path_factory.mktemp("context")
    allowed = [line[1:].strip().rstrip("/") for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.startswith("!")]
    assert {"pyproject.toml", "mesp_core", "operator"} <= set(allowed)
    for name in allowed:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
        else:
            shutil.copy2(REPO / name, source / name)
    out = tmp_path_factory.mktemp("wheel")
    # No build isolation: setuptools comes from the test extras, so this needs no index.
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(source)],
                   check=True, cwd=out, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    (built,) = out.glob("mesp-*.whl")
    return built


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_the_wheel_carries_the_packaged_model_byte_for_byte_and_the_operator(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        shipped = {name.removeprefix("mesp_core/default_model/"): _sha256(archive.read(name))
                   for name in names if name.startswith("mesp_core/default_model/") and not name.endswith("/")}
        entry_points = next(archive.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt"))
    on_disk = {str(p.relative_to(MODEL)): _sha256(p.read_bytes()) for p in MODEL.rglob("*") if p.is_file()}
    assert shipped == on_disk
    manifest = json.loads((MODEL / "manifest.json").read_text())
    assert set(manifest["files"]) <= set(shipped)  # every file the manifest hashes is there
    operator_modules = {p.name for p in (REPO / "operator" / "mesp_operator").glob("*.py")}
    assert {f"mesp_operator/{m}" for m in operator_modules} <= names
    assert "mesp = mesp_core.cli:main" in entry_points
    assert not any(name.startswith(("tests/", "bench/", "hack/")) for name in names)


def test_an_install_from_the_wheel_loads_the_packaged_model_and_the_operator(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    script = """
import sys
import numpy as np
import mesp_core, mesp_operator.main
from mesp_core.forecasting.model import default_model_path
assert mesp_core.__file__.startswith(sys.argv[1]), mesp_core.__file__
assert mesp_operator.main.__file__.startswith(sys.argv[1]), mesp_operator.main.__file__
model = mesp_core.load_model(default_model_path())
context = np.tile(np.arange(1440, dtype=np.float32) % 60, (3, 1))
print(model.forecast(context, 30).shape, len(model.clusters))
"""
    # Run from an empty folder with only the install on the path, so nothing comes from the checkout.
    env = {**os.environ, "PYTHONPATH": str(target)}
    done = subprocess.run([sys.executable, "-c", script, str(target)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    shape, clusters = done.stdout.strip().rsplit(" ", 1)
    assert shape == "(3, 30)" and int(clusters) >= 1
