"""keras_3t.__main__: the keras-3t command."""

import pytest

import keras_3t
from keras_3t.__main__ import main as cli
from tests.helpers import run_python


def test_cli_help_and_version_answer_without_loading_tensorflow():
    code = """
import sys
from keras_3t.__main__ import main
for argv in (["--help"], ["--version"]):
    try:
        main(argv)
    except SystemExit as exit:
        print(argv[0], exit.code)
print("tensorflow" in sys.modules, "keras" in sys.modules)
"""
    returncode, stdout, stderr = run_python(code)
    assert returncode == 0, stderr
    assert "usage: keras-3t" in stdout and "demo" in stdout
    assert f"keras-3t {keras_3t.__version__}" in stdout
    lines = stdout.strip().splitlines()
    assert "--help 0" in lines and "--version 0" in lines
    assert lines[-1] == "False False"


def test_cli_refuses_no_or_unknown_commands(capsys):
    for argv in ([], ["train"]):
        with pytest.raises(SystemExit) as exit:
            cli(argv)
        assert exit.value.code == 2
    assert "demo" in capsys.readouterr().err
