#!/usr/bin/env bash
# Build an upstream Kubernetes server binary (kube-apiserver, kube-controller-manager or
# kube-scheduler) from the Go module proxy: no Docker, no release download.
# The binary is linked with a stamped version (k8s.io/component-base/version.gitVersion=vX.Y.Z,
# gitMajor, gitMinor), like a release build; an unstamped one reports
# "v0.0.0-master+$Format:%H$", which Knative refuses. It is cached by version and build recipe
# under $MESP_BIN_DIR (default ~/.cache/mesp/bin) as NAME-vVERSION-stamped, so only the first run
# pays the compile: ~12 min for kube-apiserver on 2 cores, then a few minutes for each of the others
# (they share most packages, and so the Go build cache).
# Usage: hack/build-kube-binary.sh NAME [VERSION]   (prints the binary's path)
set -euo pipefail
name="${1:?usage: build-kube-binary.sh kube-apiserver|kube-controller-manager|kube-scheduler [VERSION]}"
version="${2:-${KUBE_VERSION:-1.34.3}}"
case "$name" in
  kube-apiserver|kube-controller-manager|kube-scheduler) ;;
  *) echo "build-kube-binary.sh: unknown binary $name" >&2; exit 2 ;;
esac
bin_dir="${MESP_BIN_DIR:-$HOME/.cache/mesp/bin}"
out="$bin_dir/$name-v$version-stamped"
if [[ -x "$out" ]]; then echo "$out"; exit 0; fi
mkdir -p "$bin_dir"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
go mod init mesp.local/kube-binaries >/dev/null 2>&1
# The upstream main packages are built as they are (go build of a dependency's main package);
# this file only keeps k8s.io/kubernetes in go.mod through `go mod tidy`.
cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
)
GO
# k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them with local paths;
# a consumer must pin each to the published v0.<minor>.<patch> tag itself.
gomod="$(go mod download -json "k8s.io/kubernetes@v$version" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
staging_version="v0.${version#1.}"
python3 - "$gomod" "$staging_version" > replaces.txt <<'PY'
import re, sys
gomod, staging = sys.argv[1], sys.argv[2]
for line in open(gomod):
    m = re.match(r"\s*(k8s\.io/[\w.\-/]+)\s+v0\.0\.0\s*$", line)
    if m:
        print(f"{m.group(1)}={m.group(1)}@{staging}")
PY
while read -r rep; do go mod edit -replace "$rep"; done < replaces.txt
go mod edit -require "k8s.io/kubernetes@v$version"
echo "resolving modules for $name v$version ($(wc -l < replaces.txt) staging replaces)" >&2
go mod tidy >&2
major="${version%%.*}"
minor="${version#*.}"; minor="${minor%%.*}"
ldflags="-s -w"
# The same variables Kubernetes' hack/lib/version.sh sets for a release build.
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=v$version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean"
done
echo "compiling $name v$version (first time only: kube-apiserver ~12 min on 2 cores)" >&2
CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$out.tmp" "k8s.io/kubernetes/cmd/$name" >&2
mv "$out.tmp" "$out"
echo "$out"
