#!/usr/bin/env bash
# Runs the test suite once per Keras backend, each in its own process (the
# backend is fixed at import), and prints each backend's wall time. Extra
# arguments go to pytest.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
export TF_CPP_MIN_LOG_LEVEL=3
failed=()
for backend in tensorflow jax torch; do
    echo "=== KERAS_BACKEND=$backend"
    start=$SECONDS
    KERAS_BACKEND=$backend "$PYTHON" -m pytest -q "$@" || failed+=("$backend")
    echo "=== KERAS_BACKEND=$backend took $((SECONDS - start)) s"
done
echo "=== all backends took $SECONDS s"
if [ ${#failed[@]} -gt 0 ]; then
    echo "FAILED on: ${failed[*]}"
    exit 1
fi
echo "passed on tensorflow, jax and torch"
