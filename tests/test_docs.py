"""The documentation's code and the recipes run as written."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PYTHON_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)
# Python (`python`, or `py` for code that needs the blocks before it) and shell blocks.
CODE_BLOCK = re.compile(r"```(python|py|bash)\n(.*?)```", re.DOTALL)
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


@pytest.mark.one_backend
def test_readme_preset_block_trains_and_saves(tmp_path, monkeypatch):
    section = (ROOT / "README.md").read_text().split("## In code", 1)[1]
    code = PYTHON_BLOCK.findall(section)[1]
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "<README>", "exec"), {"__name__": "__readme__"})
    assert (tmp_path / "my_3t" / "config.json").is_file()


@pytest.mark.one_backend
def test_quickstart_own_captions_section_runs_end_to_end(tmp_path, monkeypatch):
    """The section's blocks in order, from a folder holding recipes/ as a clone's root does."""
    page = (ROOT / "docs" / "quickstart.md").read_text()
    section = page.split("## Your own captions, end to end", 1)[1].split("\n## ", 1)[0]
    blocks = CODE_BLOCK.findall(section)
    assert [language for language, _ in blocks] == ["python", "bash", "py"]
    (tmp_path / "recipes").symlink_to(ROOT / "recipes")
    monkeypatch.chdir(tmp_path)
    # `python` is this environment's, which imports this checkout's keras_3t.
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    environment = dict(os.environ, PATH=path, PYTHONPATH=str(ROOT))
    for language, code in blocks:
        if language == "bash":
            result = subprocess.run(
                code, shell=True, executable="bash", env=environment, capture_output=True, text=True
            )
            assert result.returncode == 0, result.stderr[-3000:]
            assert "built a vocabulary of 53 word pieces from 48 captions" in result.stdout, (
                result.stdout
            )
        else:
            exec(compile(code, "<quickstart>", "exec"), {"__name__": "__docs__"})
