"""The documentation's code and the recipes run as written."""

import os
import pathlib
import re
import subprocess
import sys

import keras
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PYTHON_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)
DOC_BLOCKS = [
    pytest.param(block, id=f"{page.name}-{i}")
    for page in sorted((ROOT / "docs").glob("*.md"))
    for i, block in enumerate(PYTHON_BLOCK.findall(page.read_text()))
]


@pytest.mark.parametrize("code", DOC_BLOCKS)
def test_docs_python_blocks_run(code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "<docs>", "exec"), {"__name__": "__docs__"})


def test_quickstart_recipe_trains_and_saves(tmp_path):
    command = [
        sys.executable,
        str(ROOT / "recipes" / "quickstart.py"),
        "--epochs",
        "2",
        "--output",
        str(tmp_path),
    ]
    env = dict(os.environ, KERAS_BACKEND=keras.backend.backend())
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    epochs = re.findall(r"epoch +\d+ +loss ([\d.]+) +image_text", result.stdout)
    assert len(epochs) == 2 and float(epochs[1]) < float(epochs[0]), result.stdout
    rows = re.findall(r"^\| (\d\.\d\d) \|", result.stdout, re.MULTILINE)
    assert rows == ["0.00", "0.25", "0.50", "0.75", "1.00"], result.stdout
    with open(tmp_path / f"alpha_sweep_{keras.backend.backend()}.png", "rb") as plot:
        assert plot.read(4) == b"\x89PNG"
    saved = tmp_path / f"3t_{keras.backend.backend()}.keras"
    assert keras.saving.load_model(saved).objective == "3t"
    again = subprocess.run(command, env=env, capture_output=True, text=True)
    assert again.returncode != 0 and "pass --overwrite" in again.stderr


def test_readme_image_example_prints_what_the_readme_shows(tmp_path, monkeypatch, capsys):
    section = (ROOT / "README.md").read_text().split("## In code", 1)[1]
    code = PYTHON_BLOCK.search(section).group(1)
    shown = re.search(r"```text\n(.*?)```", section, re.DOTALL).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "<README>", "exec"), {"__name__": "__readme__"})
    assert capsys.readouterr().out == shown
