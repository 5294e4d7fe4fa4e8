#!/usr/bin/env bash
# Create or reuse the project's virtualenv and print its path (used by hack/test.sh and hack/demo.sh).
# Cached in $MESP_CACHE/venv-py<python version>-torch<version> (default ~/.cache/mesp): torch first
# (a CPU wheel from $PIP_FIND_LINKS when one is there, else PyPI's default build: several GB, ~10 min
# cold), then the project editable with its [test] extras. Later runs only top it up when
# pyproject.toml changed, and re-point it when the checkout moved (seconds). Progress goes to stderr.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
cache="${MESP_CACHE:-$HOME/.cache/mesp}"
export PIP_DISABLE_PIP_VERSION_CHECK=1
torch_version="2.13.0"
step() { echo "==> $*" >&2; }
mkdir -p "$cache"
{
python="${PYTHON:-python3}"
py_version="$("$python" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"
venv="$cache/venv-py$py_version-torch$torch_version"
deps_key="$(sha256sum pyproject.toml | cut -c1-16)"
if [[ ! -f "$venv/.complete" ]]; then
  step "creating $venv (first time: downloads torch and its libraries, several GB)"
  rm -rf "$venv"
  "$python" -m venv "$venv"
  # torch first and pinned: pip prefers a CPU wheel from $PIP_FIND_LINKS when one is there.
  "$venv/bin/pip" install -q "torch==$torch_version"
  "$venv/bin/pip" install -q -e '.[test]'
  echo "$deps_key" > "$venv/.deps"
  touch "$venv/.complete"
elif [[ "$(cat "$venv/.deps" 2>/dev/null)" != "$deps_key" ]]; then
  step "pyproject.toml changed: updating $venv"
  "$venv/bin/pip" install -q -e '.[test]'
  echo "$deps_key" > "$venv/.deps"
elif ! "$venv/bin/python" - "$repo" <<'PY'
import sys
import mesp_core, mesp_operator
sys.exit(0 if all(m.__file__.startswith(sys.argv[1] + "/") for m in (mesp_core, mesp_operator)) else 1)
PY
then
  # The cached environment points at another checkout (CI clones afresh): re-point it here.
  step "re-pointing $venv at $repo"
  "$venv/bin/pip" install -q --no-deps -e .
else
  step "reusing $venv"
fi
} >&2
echo "$venv"
