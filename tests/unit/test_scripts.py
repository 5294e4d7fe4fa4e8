"""The shell scripts, linted by shellcheck: the kind e2e and the demo are never run by CI on this
machine (no Docker engine), so this is what keeps their mistakes from reaching users.

hack/test.sh installs shellcheck from Debian; nothing here is skipped when it is missing."""

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = sorted(REPO.glob("hack/*.sh")) + [REPO / ".ci" / "run"]


@pytest.fixture(scope="module")
def shellcheck() -> str:
    path = shutil.which("shellcheck")
    if path is None:
        pytest.fail("shellcheck not found: install it (apt-get install shellcheck; hack/test.sh does)")
    return path


def test_every_script_is_checked():
    names = {p.name for p in SCRIPTS}
    assert {"test.sh", "demo.sh", "e2e-kind.sh", "run"} <= names


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(REPO)))
def test_script_has_no_shellcheck_warnings(shellcheck, script):
    # Warnings and errors only: the info level flags intended single quotes in `bash -c '...'` and
    # functions only reached through `trap`.
    result = subprocess.run([shellcheck, "--severity=warning", "--external-sources", str(script)],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
