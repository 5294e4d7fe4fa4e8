#!/usr/bin/env bash
# The README's first command: set up the environment (hack/venv.sh) and run the main job,
# `mesp demo`: generate a realistic trace (or read Azure trace files given with --trace), train the
# mixture of experts, evaluate it against the dense models and the naive floors on unseen functions,
# replay cold starts under every policy, and print the tables; plots and JSON land in ./mesp-demo.
#   hack/demo.sh                                   # built-in generated trace
#   hack/demo.sh --trace path/to/invocations_per_function_md.anon.d0{1,2}.csv --full
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$(bash "$repo/hack/venv.sh")"
exec "$venv/bin/mesp" demo "$@"
