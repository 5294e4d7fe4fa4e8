#!/usr/bin/env bash
# Build one of the Knative test bed's Go programs from the Go module proxy (no Docker, no release
# download), pinned by version and cached under $MESP_BIN_DIR (default ~/.cache/mesp/bin) as
# NAME-vVERSION, so only the first run pays the compile:
#   etcd                 go.etcd.io/etcd/server/v3 (a main calling etcdmain.Main, as etcd's own
#                        main.go does; etcd's root module cannot be `go install`ed: it has replaces)
#   kwok                 sigs.k8s.io/kwok/cmd/kwok
#   knative-controller   knative.dev/serving/cmd/controller, its main.go taken from the module with
#                        one change: sharedmain.WithHealthProbesDisabled. Its kubelet probe server
#                        binds :8080, as the autoscaler's stats server does, and on the test bed
#                        both share one network namespace (no kubelet probes anything there).
#                        Cached as knative-controller-vVERSION-noprobes.
#   knative-autoscaler   knative.dev/serving/cmd/autoscaler
#   knative-webhook      knative.dev/serving/cmd/webhook
# The kube binaries are built by hack/build-kube-binary.sh.
# Usage: hack/build-go-binary.sh NAME   (prints the binary's path)
# Versions: ETCD_VERSION (3.6.5, the etcd kubeadm 1.34 deploys), KWOK_VERSION (0.8.0),
# KNATIVE_SERVING_VERSION (0.48.0 = Knative 1.21: the newest that builds from the proxy, on
# client-go v0.34.3; the Knative suite also runs 0.47.0 = Knative 1.20).
set -euo pipefail
name="${1:?usage: build-go-binary.sh etcd|kwok|knative-controller|knative-autoscaler|knative-webhook}"
etcd_version="${ETCD_VERSION:-3.6.5}"
kwok_version="${KWOK_VERSION:-0.8.0}"
serving_version="${KNATIVE_SERVING_VERSION:-0.48.0}"
case "$name" in
  etcd) version="$etcd_version" ;;
  kwok) version="$kwok_version"; pkg="sigs.k8s.io/kwok/cmd/kwok" ;;
  knative-controller|knative-autoscaler|knative-webhook)
    version="$serving_version"; pkg="knative.dev/serving/cmd/${name#knative-}" ;;
  *) echo "build-go-binary.sh: unknown binary $name" >&2; exit 2 ;;
esac
bin_dir="${MESP_BIN_DIR:-$HOME/.cache/mesp/bin}"
out="$bin_dir/$name-v$version"
[[ "$name" == knative-controller ]] && out+="-noprobes"
if [[ -x "$out" ]]; then echo "$out"; exit 0; fi
mkdir -p "$bin_dir"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
export CGO_ENABLED=0
echo "compiling $name v$version (first time only)" >&2
if [[ "$name" == etcd ]]; then
  go mod init mesp.local/etcd >/dev/null 2>&1
  cat > main.go <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
GO
  go mod edit -require "go.etcd.io/etcd/server/v3@v$version"
  go mod tidy >&2
  go build -trimpath -ldflags "-s -w" -o "$out.tmp" . >&2
elif [[ "$name" == knative-controller ]]; then
  # Same build list as `go install ...@vVERSION`: knative.dev/serving's own go.mod and go.sum.
  src="$(go mod download -json "knative.dev/serving@v$version" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
  cp "$src/go.mod" "$src/go.sum" .
  chmod u+w go.mod go.sum
  go mod edit -module mesp.local/knative-controller -require "knative.dev/serving@v$version"
  sed 's/ctx := signals.NewContext()/ctx := sharedmain.WithHealthProbesDisabled(signals.NewContext())/' \
    "$src/cmd/controller/main.go" > main.go
  grep -q 'WithHealthProbesDisabled(signals.NewContext())' main.go \
    || { echo "build-go-binary.sh: cmd/controller/main.go of serving v$version changed; cannot disable its probes" >&2; exit 1; }
  go mod tidy >&2
  go build -trimpath -ldflags "-s -w" -o "$out.tmp" . >&2
else
  GOBIN="$work/bin" go install -trimpath -ldflags "-s -w" "$pkg@v$version" >&2
  mv "$work/bin/$(basename "$pkg")" "$out.tmp"
fi
mv "$out.tmp" "$out"
echo "$out"
