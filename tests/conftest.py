"""pytest's hooks for the suite, which runs once per Keras backend.

Two markers leave tests out of a run:

- `slow`: long end-to-end runs, skipped unless `--run-slow` is given. Each
  one's check is also made by a faster test that always runs.
- `one_backend`: checks that do not depend on the Keras backend (the docs'
  code and the docstring examples in `keras_3t/`, which call only the public
  API that the other tests check on every backend; a recipe's files, flags
  and resume; a KerasTuner sweep; a benchmark script's report; the wheel),
  run under `ONE_BACKEND` only, since the suite runs once per backend.
"""

import os
import pathlib

# The tests' models are tiny, so under JAX most of their time goes to XLA
# compiling them: compile without LLVM's costlier optimizations
# (tests/training/test_accumulation.py: 57 s -> 38 s on 2 cores). What the
# tests check does not depend on them. A user's own XLA_FLAGS are kept. Set
# before Keras loads JAX; the recipes and scripts the tests start inherit it.
os.environ.setdefault(
    "XLA_FLAGS", "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
)

import pytest  # noqa: E402

# The fastest backend on the 2-core CPU machine.
ONE_BACKEND = "torch"
PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "keras_3t"


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    # Keras loads where tests are collected: pytest-xdist's controller, which
    # only hands the tests out to its workers, starts them without it.
    import keras

    skip_slow = pytest.mark.skip(reason="slow: run with --run-slow")
    skip_other_backends = pytest.mark.skip(reason=f"one_backend: runs under {ONE_BACKEND}")
    for item in items:
        if item.path.is_relative_to(PACKAGE):  # a docstring example
            item.add_marker(pytest.mark.one_backend)
        if "slow" in item.keywords and not config.getoption("--run-slow"):
            item.add_marker(skip_slow)
        if "one_backend" in item.keywords and keras.backend.backend() != ONE_BACKEND:
            item.add_marker(skip_other_backends)


@pytest.fixture(scope="session")
def img2dataset_outputs():
    """`{format: folder}`: img2dataset's webdataset, parquet and TFRecord shards.

    Made once per machine (`img2dataset_run.cached_outputs`). Tests only read them.
    """
    from tests.data import img2dataset_run

    return img2dataset_run.cached_outputs()
