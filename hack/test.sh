#!/usr/bin/env bash
# The project's one test command (README and CI): installs everything the tests need on a fresh
# machine, then runs the whole pytest suite except the opt-in kind e2e (`-m "not e2e"`).
#   1. Debian packages: etcd-server, prometheus (with promtool), shellcheck and iproute2, only when
#      missing.
#   2. Go-built binaries, cached by version in ~/.cache/mesp/bin, in two background chains while
#      step 3 downloads: kube-apiserver, kube-controller-manager, kube-scheduler (stamped,
#      hack/build-kube-binary.sh; ~12 min cold on 2 cores for the apiserver, then a few minutes
#      for the others, which share its packages) and helm (hack/install-helm.sh, ~4 min cold);
#      and etcd 3.6, KWOK and Knative Serving's controller, autoscaler and webhook (1.21, and
#      1.20 for one scenario; hack/build-go-binary.sh) for the Knative test bed.
#   3. A virtualenv cached in ~/.cache/mesp/venv-py<python version>-torch<version>: torch first
#      (a CPU wheel from $PIP_FIND_LINKS when one is there, else PyPI's default build, ~10 min cold),
#      then the project editable with its [test] extras. Later runs only top it up when
#      pyproject.toml changed and re-point it when the checkout moved (seconds).
#   4. pytest; the integration tests start etcd, kube-apiserver and Prometheus on 127.0.0.1
#      themselves and stop them afterwards; the Knative tests (tests/knative) start real Knative
#      Serving on a control plane with KWOK nodes, inside a network namespace of their own
#      (hack/knative-bed.py; needs root). The run fails when no test ran (pytest exit 5) or when
#      any integration or Knative test was skipped: on this machine they must all really run.
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
command -v ip >/dev/null 2>&1 || missing+=(iproute2)  # the Knative test bed's network namespace
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
bed_log="$cache/build-knative-bed.log"
step "building kube binaries, helm and the Knative test bed's binaries (cached in $MESP_BIN_DIR; logs: $bin_log, $bed_log)"
# Own process groups (setsid), so an early exit of this script can stop the compilers too.
# Two chains side by side (each go build uses both cores): the kube binaries one after the other,
# so the controller-manager and scheduler reuse the apiserver's compiled packages; and the
# Knative test bed's other binaries, which share little with them.
setsid bash -c 'set -euo pipefail
  hack/build-kube-apiserver.sh > "$1/kube-apiserver.path"
  hack/build-kube-binary.sh kube-controller-manager > /dev/null
  hack/build-kube-binary.sh kube-scheduler > /dev/null
  hack/install-helm.sh > "$1/helm.path"' _ "$cache" > "$bin_log" 2>&1 &
bin_pid=$!
setsid bash -c 'set -euo pipefail
  hack/build-go-binary.sh etcd > /dev/null
  hack/build-go-binary.sh kwok > /dev/null
  # Knative 1.21 (the pinned release), and 1.20 for the actuation: Auto scenario
  for version in 0.48.0 0.47.0; do
    for name in knative-controller knative-autoscaler knative-webhook; do
      KNATIVE_SERVING_VERSION="$version" hack/build-go-binary.sh "$name" > /dev/null
    done
  done' > "$bed_log" 2>&1 &
bed_pid=$!
junit="$(mktemp --suffix=.xml)"
cleanup() {
  kill -- -"$bin_pid" 2>/dev/null || true
  kill -- -"$bed_pid" 2>/dev/null || true
  rm -f "$junit"
}
trap cleanup EXIT

# --- 3. Python environment (hack/venv.sh: cached, topped up when pyproject.toml changes) ---------
venv="$(bash hack/venv.sh)"
export PATH="$venv/bin:$PATH"

if ! wait "$bin_pid"; then
  tail -n 40 "$bin_log" >&2
  echo "test.sh: building the kube binaries or helm failed (full log: $bin_log)" >&2
  exit 1
fi
if ! wait "$bed_pid"; then
  tail -n 40 "$bed_log" >&2
  echo "test.sh: building etcd, KWOK or Knative Serving failed (full log: $bed_log)" >&2
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
# Integration and Knative tests must run here, never skip: their servers are installed above.
# With a narrower selection given as arguments, only the no-skip rule applies.
require_integration=$(( $# == 0 ))
"$venv/bin/python" - "$junit" "$require_integration" <<'PY'
import sys
import xml.etree.ElementTree as ET

cases = list(ET.parse(sys.argv[1]).iter("testcase"))
ran = []
for suite in ("integration", "knative"):
    chosen = [c for c in cases if c.get("classname", "").startswith(f"tests.{suite}.")]
    skipped = [c for c in chosen if c.find("skipped") is not None]
    for case in skipped:
        reason = case.find("skipped").get("message", "")
        print(f"test.sh: {suite} test skipped: {case.get('classname')}::{case.get('name')}: {reason}", file=sys.stderr)
    if skipped:
        sys.exit(f"test.sh: {len(skipped)} {suite} test(s) skipped; they must run in CI")
    if sys.argv[2] == "1" and not chosen:
        sys.exit(f"test.sh: no {suite} test ran")
    ran.append(f"{len(chosen)} {suite}")
print(f"test.sh: {' and '.join(ran)} tests ran, none skipped")
PY
exit "$status"
