"""keras_3t.__main__: the keras-3t command."""

import pytest

import keras_3t
from keras_3t.__main__ import main as cli
from tests.helpers import run_python


def test_cli_help_version_and_bad_arguments_answer_without_loading_keras():
    code = """
import sys
from keras_3t.__main__ import main
for argv in (["--help"], ["--version"], ["demo", "--help"], ["demo", "--seed", "abc"],
             ["demo", "--regime", "foo"], ["embed", "--help"], ["search", "--help"],
             ["embed", "3t_tiny", "--output", "o"],
             ["embed", "3t_tiny", "--captions", "c", "--output", "o", "--batch-size", "0"],
             ["search", "out"]):
    try:
        main(argv)
    except SystemExit as exit:
        print(" ".join(argv), exit.code)
print("tensorflow" in sys.modules, "keras" in sys.modules)
"""
    returncode, stdout, stderr = run_python(code)
    assert returncode == 0, stderr
    assert "usage: keras-3t" in stdout and "demo" in stdout
    assert "usage: keras-3t demo" in stdout and "--mismatched" in stdout
    assert f"keras-3t {keras_3t.__version__}" in stdout
    lines = stdout.strip().splitlines()
    assert {"--help 0", "--version 0", "demo --help 0"} <= set(lines)
    assert {"demo --seed abc 2", "demo --regime foo 2"} <= set(lines)
    assert "argument --seed: invalid int value: 'abc'" in stderr
    assert "argument --regime: invalid choice: 'foo'" in stderr
    assert "usage: keras-3t embed" in stdout and "--on-bad-data" in stdout
    assert "usage: keras-3t search" in stdout and "--top-k" in stdout
    assert {"embed --help 0", "search --help 0", "search out 2"} <= set(lines)
    assert "one of the arguments --images --captions is required" in stderr
    assert "argument --batch-size: '0' is not a positive integer" in stderr
    assert "give a caption QUERY or an --image FILE to search for" in stderr
    assert lines[-1] == "False False"


def test_cli_refuses_no_or_unknown_commands(capsys):
    for argv in ([], ["train"]):
        with pytest.raises(SystemExit) as exit:
            cli(argv)
        assert exit.value.code == 2
    assert "demo" in capsys.readouterr().err
