#!/usr/bin/env bash
# Build an upstream kube-apiserver from the Go module proxy (no Docker, no release download),
# linked with a stamped version. See hack/build-kube-binary.sh, which builds it (and the
# controller manager and scheduler the Knative test bed needs). Cached by version under
# $MESP_BIN_DIR (default ~/.cache/mesp/bin), so only the first run pays the ~12 minute compile.
# Usage: hack/build-kube-apiserver.sh [VERSION]   (prints the binary's path)
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/build-kube-binary.sh" kube-apiserver "${1:-${KUBE_VERSION:-1.34.3}}"
