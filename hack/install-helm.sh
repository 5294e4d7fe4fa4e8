#!/usr/bin/env bash
# Install a pinned helm from the Go module proxy (no release tarball download, no Docker).
# Cached by version under $MESP_BIN_DIR (default ~/.cache/mesp/bin): only the first run compiles
# (a few minutes on 2 cores); later runs are a no-op. Prints the binary's path on stdout.
# Usage: hack/install-helm.sh [VERSION]
set -euo pipefail
version="${1:-${HELM_VERSION:-3.22.0}}"
bin_dir="${MESP_BIN_DIR:-$HOME/.cache/mesp/bin}"
out="$bin_dir/helm-v$version"
if [[ -x "$out" ]]; then echo "$out"; exit 0; fi
if ! command -v go >/dev/null 2>&1; then
  echo "install-helm: 'go' is not on PATH; install Go >= 1.24 first" >&2
  exit 1
fi
mkdir -p "$bin_dir"
# GOBIN in a private temp dir so a half-built binary never lands at the cached path.
gobin="$(mktemp -d)"
trap 'rm -rf "$gobin"' EXIT
# helm's Makefile stamps its version and the Kubernetes version it defaults to (for `helm template`
# and `helm lint` without a cluster) through ldflags; a plain `go install` would leave v1.20.0 there.
# Derive the latter from the client-go module helm pins, exactly as the Makefile does.
gomod="$(go mod download -json "helm.sh/helm/v3@v$version" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
client_go="$(sed -n 's/^[[:space:]]*k8s\.io\/client-go v0\.\([0-9]*\)\..*/\1/p' "$gomod" | head -n1)"
if [[ -z "$client_go" ]]; then
  echo "install-helm: cannot find k8s.io/client-go in $gomod" >&2
  exit 1
fi
pkg="helm.sh/helm/v3"
ldflags="-s -w -X $pkg/internal/version.version=v$version"
ldflags+=" -X $pkg/pkg/lint/rules.k8sVersionMajor=1 -X $pkg/pkg/lint/rules.k8sVersionMinor=$client_go"
ldflags+=" -X $pkg/pkg/chartutil.k8sVersionMajor=1 -X $pkg/pkg/chartutil.k8sVersionMinor=$client_go"
echo "compiling helm v$version with go install (first time only: a few minutes)" >&2
CGO_ENABLED=0 GOBIN="$gobin" go install -trimpath -ldflags "$ldflags" "$pkg/cmd/helm@v$version" >&2
mv "$gobin/helm" "$out"
echo "$out"
