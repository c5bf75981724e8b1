"""The documentation's code and the recipes run as written."""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PYTHON_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)
DOC_BLOCKS = [
    pytest.param(block, id=f"{page.name}-{i}")
    for page in sorted((ROOT / "docs").glob("*.md"))
    for i, block in enumerate(PYTHON_BLOCK.findall(page.read_text()))
]


@pytest.mark.parametrize("code", DOC_BLOCKS)
@pytest.mark.one_backend
def test_docs_python_blocks_run(code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "<docs>", "exec"), {"__name__": "__docs__"})


def test_readme_image_example_prints_what_the_readme_shows(tmp_path, monkeypatch, capsys):
    section = (ROOT / "README.md").read_text().split("## In code", 1)[1]
    code = PYTHON_BLOCK.search(section).group(1)
    shown = re.search(r"```text\n(.*?)```", section, re.DOTALL).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "<README>", "exec"), {"__name__": "__readme__"})
    assert capsys.readouterr().out == shown


def test_readme_preset_block_trains_and_saves(tmp_path, monkeypatch):
    section = (ROOT / "README.md").read_text().split("## In code", 1)[1]
    code = PYTHON_BLOCK.findall(section)[1]
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "<README>", "exec"), {"__name__": "__readme__"})
    assert (tmp_path / "my_3t" / "config.json").is_file()
