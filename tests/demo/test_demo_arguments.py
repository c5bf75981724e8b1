"""keras_3t.demo.demo_arguments: the demo's options, without Keras."""

import pytest

from keras_3t.demo.demo_arguments import parse_args


def test_defaults_and_options():
    defaults = parse_args([])
    assert (defaults.regime, defaults.seed, defaults.quick, defaults.output) == (
        "web",
        0,
        False,
        None,
    )
    args = parse_args(["--regime", "clean", "--mismatched", "--seed", "2", "--save-presets", "p"])
    assert (args.regime, args.mismatched, args.seed, args.save_presets) == ("clean", True, 2, "p")


def test_a_bad_option_names_itself(capsys):
    for argv, message in (
        (["--seed", "abc"], "argument --seed: invalid int value: 'abc'"),
        (["--regime", "foo"], "argument --regime: invalid choice: 'foo'"),
    ):
        with pytest.raises(SystemExit) as exit:
            parse_args(argv)
        assert exit.value.code == 2
        assert message in capsys.readouterr().err
