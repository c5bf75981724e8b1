#!/usr/bin/env bash
# Runs the test suite once per Keras backend, each in its own pytest run (the
# backend is fixed at import), and prints each backend's wall time. Each run
# spreads its test files over TEST_WORKERS processes (pytest-xdist; default 2,
# 0 runs them in the pytest process itself). Extra arguments go to pytest.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
WORKERS=${TEST_WORKERS:-2}
export TF_CPP_MIN_LOG_LEVEL=3
failed=()
for backend in tensorflow jax torch; do
    echo "=== KERAS_BACKEND=$backend"
    start=$SECONDS
    KERAS_BACKEND=$backend "$PYTHON" -m pytest -q -n "$WORKERS" --dist loadfile "$@" || failed+=("$backend")
    echo "=== KERAS_BACKEND=$backend took $((SECONDS - start)) s"
done
echo "=== all backends took $SECONDS s"
if [ ${#failed[@]} -gt 0 ]; then
    echo "FAILED on: ${failed[*]}"
    exit 1
fi
echo "passed on tensorflow, jax and torch"
