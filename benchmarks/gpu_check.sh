#!/usr/bin/env bash
# The GPU check of issue 24 (benchmarks/gpu_check.py says what it runs): under 8 minutes on a
# machine with an NVIDIA GPU, one JSON summary; without one, one error line and exit code 1.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python benchmarks/gpu_check.py "$@"
