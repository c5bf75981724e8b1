#!/usr/bin/env bash
# Runs the test suite once per Keras backend, each in its own process (the
# backend is fixed at import). Extra arguments go to pytest.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
export TF_CPP_MIN_LOG_LEVEL=3
failed=()
for backend in tensorflow jax torch; do
    echo "=== KERAS_BACKEND=$backend"
    KERAS_BACKEND=$backend "$PYTHON" -m pytest -q "$@" || failed+=("$backend")
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "FAILED on: ${failed[*]}"
    exit 1
fi
echo "passed on tensorflow, jax and torch"
