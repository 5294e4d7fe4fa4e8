#!/usr/bin/env bash
# The project's one test command (README and CI): installs everything the tests need on a fresh
# machine, then runs the whole pytest suite except the opt-in kind e2e (`-m "not e2e"`).
#   1. Debian packages: etcd-server, prometheus (with promtool) and shellcheck, only when missing.
#   2. Go-built binaries, cached by version in ~/.cache/mesp/bin: kube-apiserver
#      (hack/build-kube-apiserver.sh, ~12 min cold on 2 cores) and helm (hack/install-helm.sh,
#      ~4 min cold). They compile in the background while step 3 downloads.
#   3. A virtualenv cached in ~/.cache/mesp/venv-py<python version>-torch<version>: torch first
#      (a CPU wheel from $PIP_FIND_LINKS when one is there, else PyPI's default build, ~10 min cold),
#      then the project editable with its [test] extras. Later runs only top it up when
#      pyproject.toml changed and re-point it when the checkout moved (seconds).
#   4. pytest; the integration tests start etcd, kube-apiserver and Prometheus on 127.0.0.1
#      themselves and stop them afterwards. The run fails when no test ran (pytest exit 5) or when
#      any integration test was skipped: on this machine they must all really run.
# Environment: MESP_CACHE (default ~/.cache/mesp), PYTHON (default python3). Arguments replace the
# default selection (tests/), e.g. `hack/test.sh tests/unit -x`.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
cache="${MESP_CACHE:-$HOME/.cache/mesp}"
export MESP_BIN_DIR="${MESP_BIN_DIR:-$cache/bin}"
export PIP_DISABLE_PIP_VERSION_CHECK=1
start=$SECONDS
step() { echo "==> [$(( SECONDS - start ))s] $*"; }

# --- 1. system packages -------------------------------------------------------------------------
missing=()
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
{ command -v prometheus && command -v promtool; } >/dev/null 2>&1 || missing+=(prometheus)
command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)  # lints the scripts CI cannot run (kind e2e)
if (( ${#missing[@]} )); then
  step "installing Debian packages: ${missing[*]}"
  sudo=()
  if (( EUID != 0 )); then
    command -v sudo >/dev/null 2>&1 || { echo "test.sh: need root or sudo to install ${missing[*]}" >&2; exit 1; }
    sudo=(sudo)
  fi
  # Keep the packages' init scripts from starting system-wide etcd/Prometheus daemons: the tests
  # start their own on free loopback ports, and a daemon on :2379/:9090 would only get in the way.
  policy=/usr/sbin/policy-rc.d
  added_policy=0
  if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
    "${sudo[@]}" chmod +x "$policy"
    added_policy=1
  fi
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  if (( added_policy )); then "${sudo[@]}" rm -f "$policy"; fi
else
  step "Debian packages present: etcd $(etcd --version 2>/dev/null | head -n1 | awk '{print $3}'), prometheus $(prometheus --version 2>&1 | head -n1 | awk '{print $3}')"
fi

# --- 2. Go-built binaries (background; waited for before pytest) ------------------------------
mkdir -p "$cache"
bin_log="$cache/build-binaries.log"
step "building kube-apiserver and helm (cached in $MESP_BIN_DIR; log: $bin_log)"
# Own process group (setsid), so an early exit of this script can stop the compilers too.
# One binary after the other: each go build already uses both cores.
setsid bash -c 'set -euo pipefail
  hack/build-kube-apiserver.sh > "$1/kube-apiserver.path"
  hack/install-helm.sh > "$1/helm.path"' _ "$cache" > "$bin_log" 2>&1 &
bin_pid=$!
junit="$(mktemp --suffix=.xml)"
cleanup() {
  kill -- -"$bin_pid" 2>/dev/null || true
  rm -f "$junit"
}
trap cleanup EXIT

# --- 3. Python environment (hack/venv.sh: cached, topped up when pyproject.toml changes) ---------
venv="$(bash hack/venv.sh)"
export PATH="$venv/bin:$PATH"

if ! wait "$bin_pid"; then
  tail -n 40 "$bin_log" >&2
  echo "test.sh: building kube-apiserver or helm failed (full log: $bin_log)" >&2
  exit 1
fi
MESP_KUBE_APISERVER="$(cat "$cache/kube-apiserver.path")"
MESP_HELM="$(cat "$cache/helm.path")"
export MESP_KUBE_APISERVER MESP_HELM HELM="$MESP_HELM"
step "binaries ready: $MESP_KUBE_APISERVER, $MESP_HELM"

# --- 4. tests ------------------------------------------------------------------------------------
step "running pytest -m 'not e2e'"
set +e
# Arguments (paths, -k, -x ...) replace the default selection of the whole tests/ tree.
selection=("$@")
(( ${#selection[@]} )) || selection=(tests)
"$venv/bin/python" -m pytest -m "not e2e" -rs --junitxml="$junit" "${selection[@]}"
status=$?
set -e
step "pytest exited with $status"
if (( status == 5 )); then
  echo "test.sh: pytest collected no tests" >&2
  exit 1
fi
# Integration tests must run here, never skip: their servers are installed above.
# With a narrower selection given as arguments, only the no-skip rule applies.
require_integration=$(( $# == 0 ))
"$venv/bin/python" - "$junit" "$require_integration" <<'PY'
import sys
import xml.etree.ElementTree as ET

cases = list(ET.parse(sys.argv[1]).iter("testcase"))
integration = [c for c in cases if c.get("classname", "").startswith("tests.integration.")]
skipped = [c for c in integration if c.find("skipped") is not None]
for case in skipped:
    reason = case.find("skipped").get("message", "")
    print(f"test.sh: integration test skipped: {case.get('classname')}::{case.get('name')}: {reason}", file=sys.stderr)
if skipped:
    sys.exit(f"test.sh: {len(skipped)} integration test(s) skipped; they must run in CI")
if sys.argv[2] == "1" and not integration:
    sys.exit("test.sh: no integration test ran")
print(f"test.sh: {len(integration) - len(skipped)} integration tests ran, none skipped")
PY
exit "$status"
